"""The descriptor cache in Redis (``redis.addr``), shared by every instance pointed at the same server.

Keys, under a ``regtool::`` prefix so a distribution sharing the Redis keeps its own::

    regtool::blobs::<digest>                     hash {size, mediatype}
    regtool::repository::<name>::blobs           set of the digests the repository links
    regtool::repository::<name>::manifests       hash digest -> media type of the manifest revisions it holds

Redis going away never fails a request: the first failed call logs one warning and the cache stands aside (every
lookup a miss, nothing sent) for ``retry_after`` seconds; the next call after that tries again, and success logs
that the cache is back. Timeouts are short because a lookup waits on the request's path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from regtool.digest import Digest
from regtool.errors import UsageError
from regtool.protocol.errcodes import ErrorCode
from regtool.reference import split_host_port
from regtool.server.cache.descriptors import BlobDescriptor, CacheStats
from regtool.server.errors import ApiError

if TYPE_CHECKING:
    import redis

__all__ = ["RedisDescriptorCache", "parse_redis_addr"]

logger = logging.getLogger("regtool.server")

T = TypeVar("T")
PREFIX = "regtool::"


def parse_redis_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too; the port defaults to 6379) -> (host, port); UsageError naming the value."""
    host, port = split_host_port(addr)
    port = 6379 if port is None else port
    if not host or (":" in host and not addr.startswith("[")) or not 0 < port < 65536:
        raise UsageError(f"redis address {addr!r} must be HOST:PORT")
    return host, port


class RedisDescriptorCache:
    """``DescriptorCache`` over one Redis server (thread-safe: redis-py's pool hands each thread a connection)."""

    def __init__(
        self,
        addr: str,
        *,
        password: str | None = None,
        db: int = 0,
        timeout: float = 0.5,
        retry_after: float = 5.0,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        host, port = parse_redis_addr(addr)
        self.addr = addr
        self.stats = CacheStats()
        self._retry_after = retry_after
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        # No retries inside redis-py: a dead Redis must cost one short timeout, then nothing until retry_after.
        self._client: redis.Redis = redis.Redis(
            host=host,
            port=port,
            password=password,
            db=db,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0

    # -- the DescriptorCache interface --------------------------------------------------------------------------

    def blob(self, repository: str | None, digest: Digest) -> tuple[bool, BlobDescriptor | None]:
        def lookup(client: redis.Redis) -> tuple[bool, BlobDescriptor | None]:
            pipe = client.pipeline(transaction=False)
            if repository is not None:
                pipe.sismember(_repository_blobs(repository), str(digest))
            pipe.hgetall(_blob(digest))
            replies = pipe.execute()
            member = bool(replies[0]) if repository is not None else False
            return member, _descriptor(replies[-1])

        asked, found = self._ask(lookup)
        member, descriptor = found or (False, None)
        if asked:
            self.stats.count(hit=member if repository is not None else descriptor is not None)
        return member, descriptor

    def remember_blob(self, repository: str | None, digest: Digest, descriptor: BlobDescriptor | None) -> None:
        def store(client: redis.Redis) -> None:
            pipe = client.pipeline(transaction=False)
            if repository is not None:
                pipe.sadd(_repository_blobs(repository), str(digest))
            if descriptor is not None:
                pipe.hset(_blob(digest), mapping={"size": descriptor.size, "mediatype": descriptor.media_type})
            pipe.execute()

        self._run(store)

    def manifest_media_type(self, repository: str, digest: Digest) -> str | None:
        def lookup(client: redis.Redis) -> str | None:
            value = client.hget(_repository_manifests(repository), str(digest))
            return value if isinstance(value, str) else None

        asked, media_type = self._ask(lookup)
        if asked:
            self.stats.count(hit=media_type is not None)
        return media_type

    def remember_manifest(self, repository: str, digest: Digest, media_type: str) -> None:
        self._run(lambda client: client.hset(_repository_manifests(repository), str(digest), media_type))

    def forget_link(self, repository: str, digest: Digest) -> None:
        def forget(client: redis.Redis) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.srem(_repository_blobs(repository), str(digest))
            pipe.hdel(_repository_manifests(repository), str(digest))
            pipe.execute()

        self._run_required(forget, f"{repository}'s link to {digest}")

    def forget_blob(self, digest: Digest) -> None:
        self._run_required(lambda client: client.delete(_blob(digest)), f"blob {digest}")

    # -- failures ---------------------------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while the cache stands aside after a failure."""
        return self._down_since is None

    def _run_required(self, operation: Callable[[redis.Redis], T], what: str) -> T:
        """An invalidation: tried even while the cache stands aside, and when Redis cannot take it the request
        fails (503) instead. Entries never expire and a hit is answered without the store, so a delete whose
        invalidation was skipped would leave every instance serving what it deleted."""
        try:
            result = operation(self._client)
        except self._errors as exc:
            self._fail(exc)
            raise ApiError(
                ErrorCode.UNAVAILABLE,
                f"the redis cache at {self.addr} cannot forget {what} ({str(exc) or type(exc).__name__}): "
                "nothing was deleted; try again",
            ) from None
        self._back()
        return result

    def _run(self, operation: Callable[[redis.Redis], T]) -> T | None:
        """A write the cache may miss: skipped while it stands aside, and a failure only sets it aside."""
        return self._ask(operation, lookup=False)[1]

    def _ask(self, operation: Callable[[redis.Redis], T], *, lookup: bool = True) -> tuple[bool, T | None]:
        """``operation``'s result, and whether Redis answered. A lookup it could not ask counts as one error:
        each lookup is one hit, one miss or one error (the metric's promise), and a write counts none."""
        if self._down_since is not None and time.monotonic() < self._retry_at:
            if lookup:
                self.stats.error()
            return False, None
        try:
            result = operation(self._client)
        except self._errors as exc:
            self._fail(exc)
            if lookup:
                self.stats.error()
            return False, None
        self._back()
        return True, result

    def _back(self) -> None:
        if self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    logger.warning(
                        "redis cache at %s reachable again after %.0fs: caching resumed",
                        self.addr,
                        time.monotonic() - self._down_since,
                    )
                    self._down_since = None

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            now = time.monotonic()
            self._retry_at = now + self._retry_after
            if self._down_since is None:
                self._down_since = now
                logger.warning(
                    "redis cache at %s failed (%s): serving uncached, retrying every %gs",
                    self.addr,
                    str(exc) or type(exc).__name__,
                    self._retry_after,
                )

    def close(self) -> None:
        self._client.close()


def _blob(digest: Digest) -> str:
    return f"{PREFIX}blobs::{digest}"


def _repository_blobs(repository: str) -> str:
    return f"{PREFIX}repository::{repository}::blobs"


def _repository_manifests(repository: str) -> str:
    return f"{PREFIX}repository::{repository}::manifests"


def _descriptor(fields: object) -> BlobDescriptor | None:
    if not isinstance(fields, dict):
        return None
    size = fields.get("size")
    if not isinstance(size, str) or not size.isdigit():
        return None
    return BlobDescriptor(int(size), str(fields.get("mediatype") or "application/octet-stream"))
