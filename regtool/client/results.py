"""What the client's operations return: frozen values with ``to_json()`` (what ``--json`` prints).

The CLI renders the fields for humans and prints ``to_json()`` for machines; both come from here so they agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from regtool.digest import Digest

__all__ = [
    "CopyResult",
    "InspectResult",
    "LayerInfo",
    "ProbeEvidence",
    "ProbeResult",
    "PullResult",
    "PushResult",
    "V1Info",
    "V2Info",
    "fields_json",
]


def fields_json(result: Any, *, omit_none: tuple[str, ...] = ()) -> dict[str, Any]:
    """A result's fields as JSON values, in the order they are declared: digests as strings, tuples as lists,
    nested results by their own ``to_json``, ``seconds`` to the millisecond; ``omit_none`` fields only when set."""
    data: dict[str, Any] = {}
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        if value is None and item.name in omit_none:
            continue
        data[item.name] = round(value, 3) if item.name == "seconds" else _json_value(value)
    return data


def _json_value(value: Any) -> Any:
    if isinstance(value, Digest):
        return str(value)
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    to_json = getattr(value, "to_json", None)
    return to_json() if callable(to_json) else value


@dataclass(frozen=True, slots=True)
class ProbeEvidence:
    """What one probe request saw: an HTTP status and notable headers, or the transport error."""

    url: str
    status: int | None = None
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return fields_json(self)

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
        return fields_json(self)


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
    retries: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return fields_json(self)


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
    retries: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return fields_json(self)


@dataclass(frozen=True, slots=True)
class LayerInfo:
    digest: Digest
    size: int
    media_type: str

    def to_json(self) -> dict[str, Any]:
        return fields_json(self)


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
    os: str | None = None
    architecture: str | None = None
    variant: str | None = None
    created: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    layers: tuple[LayerInfo, ...] = ()

    @property
    def size(self) -> int:
        """Sum of the layer sizes (compressed, as stored)."""
        return sum(layer.size for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {**fields_json(self), "size": self.size}


@dataclass(frozen=True, slots=True)
class CopyResult:
    """A finished copy: both ends and protocols, the target manifest digest (v2) or top image id (v1)."""

    source: str
    target: str
    source_protocol: str
    target_protocol: str
    digest: Digest | None = None
    image_id: str | None = None
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes_copied: int = 0
    seconds: float = 0.0
    # Referrer manifests carried after the image (copy --referrers); None: not asked for.
    referrers: int | None = None

    def to_json(self) -> dict[str, Any]:
        return fields_json(self, omit_none=("referrers",))
