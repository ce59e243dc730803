"""What the client's operations return: frozen values with ``to_json()`` (what ``--json`` prints).

The CLI renders the fields for humans and prints ``to_json()`` for machines; both come from here so they agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regtool.digest import Digest

__all__ = [
    "InspectResult",
    "LayerInfo",
    "ProbeEvidence",
    "ProbeResult",
    "PullResult",
    "PushResult",
    "V1Info",
    "V2Info",
]


@dataclass(frozen=True, slots=True)
class ProbeEvidence:
    """What one probe request saw: an HTTP status and notable headers, or the transport error."""

    url: str
    status: int | None = None
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "status": self.status, "error": self.error, "headers": self.headers, "note": self.note}

    def __str__(self) -> str:
        seen = f"HTTP {self.status}" if self.status is not None else f"error: {self.error}"
        return f"{self.url}: {seen}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True, slots=True)
class V2Info:
    """The v2 API as ``GET /v2/`` showed it. ``auth_scheme`` is "bearer"/"basic" when it answered 401."""

    found: bool
    api_version: str | None = None
    status: int | None = None
    auth_scheme: str | None = None
    realm: str | None = None
    service: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "api_version": self.api_version,
            "status": self.status,
            "auth": None
            if self.auth_scheme is None
            else {"scheme": self.auth_scheme, "realm": self.realm, "service": self.service},
        }


@dataclass(frozen=True, slots=True)
class V1Info:
    """The v1 API as ``GET /v1/_ping`` showed it."""

    found: bool
    version: str | None = None
    standalone: bool | None = None
    status: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"found": self.found, "version": self.version, "standalone": self.standalone, "status": self.status}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Which registry APIs answer at ``registry``: ``verdict`` is "v2", "v1", "both" or "neither"."""

    registry: str
    scheme: str | None
    v2: V2Info
    v1: V1Info
    evidence: tuple[ProbeEvidence, ...] = ()

    @property
    def verdict(self) -> str:
        if self.v2.found and self.v1.found:
            return "both"
        if self.v2.found:
            return "v2"
        if self.v1.found:
            return "v1"
        return "neither"

    @property
    def found(self) -> bool:
        return self.verdict != "neither"

    @property
    def base_url(self) -> str | None:
        return f"{self.scheme}://{self.registry}" if self.scheme else None

    def to_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "scheme": self.scheme,
            "verdict": self.verdict,
            "v2": self.v2.to_json(),
            "v1": self.v1.to_json(),
            "evidence": [e.to_json() for e in self.evidence],
        }


@dataclass(frozen=True, slots=True)
class PullResult:
    """A finished pull: what was resolved, where it went, and what was transferred."""

    reference: str
    digest: Digest
    media_type: str
    dest: str
    format: str
    protocol: str
    platforms: tuple[str, ...] = ()
    blobs_downloaded: int = 0
    blobs_skipped: int = 0
    bytes_downloaded: int = 0
    seconds: float = 0.0
    retries: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": str(self.digest),
            "media_type": self.media_type,
            "dest": self.dest,
            "format": self.format,
            "protocol": self.protocol,
            "platforms": list(self.platforms),
            "blobs_downloaded": self.blobs_downloaded,
            "blobs_skipped": self.blobs_skipped,
            "bytes_downloaded": self.bytes_downloaded,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class PushResult:
    """A finished push. ``recompressed`` is True when a docker-archive's layers were gzipped for the push."""

    reference: str
    digest: Digest
    media_type: str
    protocol: str
    blobs_uploaded: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes_uploaded: int = 0
    recompressed: bool = False
    seconds: float = 0.0
    retries: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": str(self.digest),
            "media_type": self.media_type,
            "protocol": self.protocol,
            "blobs_uploaded": self.blobs_uploaded,
            "blobs_skipped": self.blobs_skipped,
            "blobs_mounted": self.blobs_mounted,
            "bytes_uploaded": self.bytes_uploaded,
            "recompressed": self.recompressed,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class LayerInfo:
    digest: Digest
    size: int
    media_type: str

    def to_json(self) -> dict[str, Any]:
        return {"digest": str(self.digest), "size": self.size, "media_type": self.media_type}


@dataclass(frozen=True, slots=True)
class InspectResult:
    """An image as the registry describes it.

    For an index, ``platforms`` lists its entries and the image fields describe the selected platform's
    manifest (``platform``, default the host's); ``digest``/``media_type`` are always those of ``reference``.
    """

    reference: str
    digest: Digest
    media_type: str
    platforms: tuple[str, ...] = ()
    platform: str | None = None
    manifest_digest: Digest | None = None
    config_digest: Digest | None = None
    layers: tuple[LayerInfo, ...] = ()
    os: str | None = None
    architecture: str | None = None
    variant: str | None = None
    created: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Sum of the layer sizes (compressed, as stored)."""
        return sum(layer.size for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": str(self.digest),
            "media_type": self.media_type,
            "platforms": list(self.platforms),
            "platform": self.platform,
            "manifest_digest": str(self.manifest_digest) if self.manifest_digest else None,
            "config_digest": str(self.config_digest) if self.config_digest else None,
            "os": self.os,
            "architecture": self.architecture,
            "variant": self.variant,
            "created": self.created,
            "entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
            "cmd": list(self.cmd) if self.cmd is not None else None,
            "env": list(self.env),
            "labels": dict(self.labels),
            "layers": [layer.to_json() for layer in self.layers],
            "size": self.size,
        }
