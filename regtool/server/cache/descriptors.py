"""What the descriptor cache keeps and the interface ``storage/registry.py`` consults.

A descriptor is a fact about immutable content: blob ``digest`` has ``size`` bytes (and, for a manifest, a media
type). Membership says a repository links a blob or holds a manifest revision. Both only ever become false by a
delete, so every deleter invalidates them (``Registry.unlink_blob``, ``Registry.delete_manifest``,
``BlobStore.delete``); tags move and are never cached. Only positive answers are kept: an absent blob may appear
at any moment from another instance's upload.

Every method answers None / does nothing when the cache cannot be reached: the store is the truth, the cache
only saves trips to it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from regtool.digest import Digest

__all__ = ["BlobDescriptor", "CacheStats", "DescriptorCache"]


@dataclass(frozen=True, slots=True)
class BlobDescriptor:
    size: int
    media_type: str = "application/octet-stream"


class CacheStats:
    """Lookups answered from the cache (hits), sent on to the store (misses), or failed (errors); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.errors = 0

    def count(self, *, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def error(self) -> None:
        with self._lock:
            self.errors += 1


class DescriptorCache(Protocol):
    stats: CacheStats

    @property
    def available(self) -> bool:
        """False while the cache cannot be reached (every lookup a miss until it can)."""

    def blob(self, repository: str | None, digest: Digest) -> tuple[bool, BlobDescriptor | None]:
        """Whether ``repository`` is known to link ``digest`` (False when not known, or ``repository`` is None),
        and the blob's descriptor if known; one round trip for both."""

    def remember_blob(self, repository: str | None, digest: Digest, descriptor: BlobDescriptor | None) -> None:
        """Record that ``repository`` links ``digest`` (unless None) and the blob's ``descriptor`` (unless None)."""

    def manifest_media_type(self, repository: str, digest: Digest) -> str | None:
        """The media type of manifest ``digest`` in ``repository`` if known to be there."""

    def remember_manifest(self, repository: str, digest: Digest, media_type: str) -> None: ...

    def forget_link(self, repository: str, digest: Digest) -> None:
        """``repository`` no longer links ``digest`` (as a blob or as a manifest). Told before the store changes:
        ApiError(UNAVAILABLE) when it cannot be told, and the change is not made."""

    def forget_blob(self, digest: Digest) -> None:
        """The blob's bytes are gone from the store (garbage collection); ApiError(UNAVAILABLE) as ``forget_link``."""
