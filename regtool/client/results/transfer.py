"""What a finished pull, push or copy returns: what was resolved and what was moved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regtool.client.results.fields import fields_json
from regtool.digest import Digest

__all__ = ["CopyResult", "PullResult", "PushResult"]


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
