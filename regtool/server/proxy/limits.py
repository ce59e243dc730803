"""The pull-through cache's bounds: content unused for longer than the TTL goes, and past ``--proxy-max-size`` the
least recently used goes first.

When each cached blob (layers, configs and manifests alike) was last used is kept in storage, one small record per
blob (``proxy-cache/<alg>/<hex[:2]>/<hex>``: its size and last use), so the order survives a restart. Records are
rewritten at most every ``touch_interval`` seconds per blob (a write per request would cost more than the cache
saves); ``CacheLimits`` keeps the exact times of this process in memory and hands them to the collector.

``enforce_cache_limits`` is the one function that applies both bounds; the cache calls it after writes that pass
the size cap and every so often for the TTL, and the garbage collector may call it too. Removing a blob removes
its data and record only: the repository links and tags that named it stay, and the next request for it finds the
data missing and fetches it from upstream again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import anyio
import anyio.to_thread

from regtool.digest import Digest
from regtool.errors import InvalidDigest
from regtool.server.storage.driver import PathNotFound, StorageDriver
from regtool.server.storage.registry import BlobStore

__all__ = ["CACHE_RECORDS", "CacheLimits", "CacheReport", "enforce_cache_limits", "record_path"]

logger = logging.getLogger("regtool.server")

CACHE_RECORDS = "proxy-cache"


def record_path(digest: Digest) -> str:
    return f"{CACHE_RECORDS}/{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    digest: Digest
    size: int
    used: float


@dataclass(frozen=True, slots=True)
class CacheReport:
    """What one enforcement removed (``removed``, ``freed`` bytes) and what the cache holds after it."""

    removed: tuple[Digest, ...] = ()
    freed: int = 0
    kept: int = 0
    kept_bytes: int = 0


def write_record(driver: StorageDriver, digest: Digest, size: int, used: float) -> None:
    driver.put_content(record_path(digest), json.dumps({"size": size, "used": used}).encode())


def read_records(driver: StorageDriver) -> list[CacheEntry]:
    """Every record in storage (unreadable ones are skipped: a record is only a hint)."""
    entries: list[CacheEntry] = []
    for algorithm in _children(driver, CACHE_RECORDS):
        for prefix in _children(driver, f"{CACHE_RECORDS}/{algorithm}"):
            for encoded in _children(driver, f"{CACHE_RECORDS}/{algorithm}/{prefix}"):
                entry = _read_record(driver, algorithm, encoded)
                if entry is not None:
                    entries.append(entry)
    return entries


def _children(driver: StorageDriver, path: str) -> list[str]:
    try:
        return driver.list(path)
    except PathNotFound:
        return []


def _read_record(driver: StorageDriver, algorithm: str, encoded: str) -> CacheEntry | None:
    try:
        digest = Digest(algorithm, encoded) if Digest.is_valid(f"{algorithm}:{encoded}") else None
        if digest is None:
            return None
        data = json.loads(driver.get_content(record_path(digest)))
        return CacheEntry(digest, int(data["size"]), float(data["used"]))
    except (PathNotFound, ValueError, KeyError, TypeError, InvalidDigest):
        return None


def enforce_cache_limits(
    driver: StorageDriver,
    *,
    ttl: float | None,
    max_size: int | None,
    now: float | None = None,
    recent: Mapping[Digest, float] | None = None,
    blobs: BlobStore | None = None,
) -> CacheReport:
    """Remove cached blobs unused for longer than ``ttl`` seconds, then the least recently used ones until the
    cache holds at most ``max_size`` bytes; None leaves that bound off. ``recent`` holds last uses newer than the
    records (a running cache's memory); ``blobs`` is the registry's blob store, whose descriptor cache (when it has
    one) forgets what is removed. Blocking: call it in a worker thread."""
    now = time.time() if now is None else now
    store = blobs if blobs is not None else BlobStore(driver)
    recent = recent or {}
    entries = [CacheEntry(e.digest, e.size, max(e.used, recent.get(e.digest, 0.0))) for e in read_records(driver)]
    entries.sort(key=lambda e: e.used)
    total = sum(e.size for e in entries)
    removed: list[Digest] = []
    freed = 0
    for entry in entries:
        expired = ttl is not None and now - entry.used > ttl
        too_big = max_size is not None and total > max_size
        if not (expired or too_big):
            # Oldest first: once one entry is neither expired nor in the way of the cap, neither is any later one.
            break
        if _remove(driver, store, entry):
            removed.append(entry.digest)
            freed += entry.size
        total -= entry.size
    return CacheReport(tuple(removed), freed, len(entries) - len(removed), total)


def _remove(driver: StorageDriver, store: BlobStore, entry: CacheEntry) -> bool:
    # A blob used since the scan (its record rewritten) stays.
    current = _read_record(driver, entry.digest.algorithm, entry.digest.encoded)
    if current is not None and current.used > entry.used:
        return False
    try:
        store.delete(entry.digest)
    except PathNotFound:
        pass
    try:
        driver.delete(record_path(entry.digest))
    except PathNotFound:
        pass
    return True


@dataclass
class CacheLimits:
    """A running cache's side of the bounds: records uses and enforces TTL and size as the cache is used."""

    blobs: BlobStore
    ttl: float | None
    max_size: int | None
    recent: dict[Digest, float] = field(default_factory=dict)
    _persisted: dict[Digest, float] = field(default_factory=dict)
    _bytes: int | None = None
    _last_sweep: float = field(default_factory=time.monotonic)
    _busy: bool = False

    @property
    def touch_interval(self) -> float:
        return 60.0 if self.ttl is None else min(60.0, self.ttl / 10)

    @property
    def sweep_interval(self) -> float:
        return 3600.0 if self.ttl is None else min(3600.0, max(self.ttl / 10, 0.1))

    async def used(self, digest: Digest, size: int) -> None:
        """``digest`` (``size`` bytes) was served from the cache just now."""
        now = time.time()
        self.recent[digest] = now
        if now - self._persisted.get(digest, 0.0) >= self.touch_interval:
            self._persisted[digest] = now
            await anyio.to_thread.run_sync(write_record, self.blobs.driver, digest, size, now)
        await self.maybe_sweep()

    async def stored(self, digest: Digest, size: int) -> None:
        """``digest`` entered the cache: record it, and make room when that passed the size cap."""
        now = time.time()
        self.recent[digest] = now
        self._persisted[digest] = now
        await anyio.to_thread.run_sync(write_record, self.blobs.driver, digest, size, now)
        if self._bytes is not None:
            self._bytes += size
        if self.max_size is not None and (self._bytes is None or self._bytes > self.max_size):
            await self.enforce()

    async def maybe_sweep(self) -> None:
        if time.monotonic() - self._last_sweep >= self.sweep_interval:
            await self.enforce()

    async def enforce(self) -> CacheReport | None:
        """Apply both bounds now (in a worker thread); None when an enforcement is already running."""
        if self._busy:
            return None
        self._busy = True
        try:
            self._last_sweep = time.monotonic()
            recent = dict(self.recent)
            report = await anyio.to_thread.run_sync(self._enforce, recent)
        finally:
            self._busy = False
        self._bytes = report.kept_bytes
        for digest in report.removed:
            self.recent.pop(digest, None)
            self._persisted.pop(digest, None)
        if report.removed:
            logger.info("proxy: cache limits removed %d blobs (%d bytes)", len(report.removed), report.freed)
        return report

    def _enforce(self, recent: dict[Digest, float]) -> CacheReport:
        return enforce_cache_limits(
            self.blobs.driver, ttl=self.ttl, max_size=self.max_size, recent=recent, blobs=self.blobs
        )
