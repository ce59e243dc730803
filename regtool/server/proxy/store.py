"""``ProxyStore``: what the v2 handlers ask instead of the plain store when ``regtool serve`` is a pull-through cache.

The shape is distribution's (``proxyblobstore``, ``proxymanifeststore``), with what it leaves out:

- a manifest by tag is revalidated with a HEAD upstream on every request; while the upstream does not answer, the
  cached one is served, marked stale (a ``Warning`` header and an access-log line). By digest it is served from
  the cache for as long as it is cached.
- a blob in the cache is served as any stored blob; a miss starts one upstream fetch (``fill.BlobFill``) that every
  request for that blob shares, each reading the bytes as they arrive (``response.FillResponse``).
- tag lists come from upstream while it answers, else from the tags cached so far.

Pushes and deletes never get here: the handlers refuse them (UNSUPPORTED) when the registry is a cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from regtool.digest import Digest
from regtool.errors import NotFoundError, RegtoolError
from regtool.manifest import Manifest
from regtool.protocol import v2
from regtool.protocol.errcodes import ErrorCode
from regtool.server.config import ServerConfig
from regtool.server.errors import ApiError
from regtool.server.proxy.fill import BlobFill
from regtool.server.proxy.limits import CacheLimits
from regtool.server.proxy.response import FillResponse
from regtool.server.proxy.upstream import Upstream, Upstreams, is_unreachable, upstream_error
from regtool.server.storage.registry import Registry, StoredManifest

__all__ = ["STALE_WARNING", "CachedManifest", "ProxyStore"]

access_logger = logging.getLogger("regtool.server.access")

# Upstream fetches moving bodies at once; more wait for a thread (the clients waiting on them wait too).
FILL_THREADS = 64

# RFC 7234 §5.5.1: what a cache says when it serves a response it could not revalidate.
STALE_WARNING = '110 - "Response is Stale"'


@dataclasses.dataclass(frozen=True, slots=True)
class CachedManifest:
    """A manifest as the cache answers it; ``stale`` when the upstream could not confirm the tag."""

    stored: StoredManifest
    stale: bool = False


class ProxyStore:
    """The cache over ``registry``, mirroring ``config.proxy_remotes``."""

    def __init__(self, config: ServerConfig, registry: Registry) -> None:
        self.registry = registry
        self.upstreams = Upstreams(config.proxy_remotes)
        self.limits = CacheLimits(registry.blobs, config.proxy_ttl, config.proxy_max_size)
        # Fills in flight by (storage name, digest): a request joins only a fetch from its own upstream repository,
        # which is what proves the blob is that repository's to serve.
        self._fills: dict[tuple[str, Digest], BlobFill] = {}
        self._fill_threads = anyio.CapacityLimiter(FILL_THREADS)
        self._manifest_locks: dict[tuple[str, str], anyio.Lock] = {}

    def upstream(self, request: Request) -> Upstream:
        return self.upstreams.select(request.query_params.get("ns"))

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """The app's lifespan: the upstream clients' connections are closed when the server stops."""
        try:
            yield
        finally:
            for upstream in self.upstreams.all():
                await upstream.close()

    # -- manifests --------------------------------------------------------------------------------------

    async def manifest(self, request: Request, name: str, reference: str | Digest) -> CachedManifest:
        upstream = self.upstream(request)
        local = upstream.local_name(name)
        if isinstance(reference, Digest):
            cached = await self._cached_manifest(local, str(reference))
            if cached is None:
                cached = await self._fetch_manifest_once(upstream, name, str(reference), None)
            await self.limits.used(cached.digest, len(cached.raw))
            return CachedManifest(cached)
        what = f"manifest {name}:{reference}"
        try:
            digest = await upstream.head_manifest(name, reference)
        except RegtoolError as exc:
            if not is_unreachable(exc):
                raise upstream_error(exc, what, ErrorCode.MANIFEST_UNKNOWN) from None
            cached = await self._cached_manifest(local, reference)
            if cached is None:
                raise upstream_error(exc, what, ErrorCode.MANIFEST_UNKNOWN) from None
            access_logger.warning(
                "proxy: serving cached %s of %s as stale: upstream %s unreachable (%s)",
                what,
                local,
                upstream.registry,
                exc,
            )
            await self.limits.used(cached.digest, len(cached.raw))
            return CachedManifest(cached, stale=True)
        cached = None if digest is None else await self._cached_manifest(local, str(digest))
        if cached is None:
            cached = await self._fetch_manifest_once(upstream, name, str(digest or reference), reference)
        else:
            await anyio.to_thread.run_sync(self._tag, local, reference, cached.digest)
        await self.limits.used(cached.digest, len(cached.raw))
        return CachedManifest(cached)

    async def _cached_manifest(self, local: str, reference: str) -> StoredManifest | None:
        try:
            return await anyio.to_thread.run_sync(self.registry.get_manifest, local, reference)
        except ApiError:
            return None

    async def _fetch_manifest_once(
        self, upstream: Upstream, name: str, reference: str, tag: str | None
    ) -> StoredManifest:
        """``_fetch_manifest``, one at a time per manifest: the requests that waited find it cached."""
        local = upstream.local_name(name)
        key = (local, reference)
        lock = self._manifest_locks.setdefault(key, anyio.Lock())
        try:
            async with lock:
                cached = await self._cached_manifest(local, reference) if ":" in reference else None
                if cached is None:
                    return await self._fetch_manifest(upstream, name, reference, tag)
                if tag is not None:
                    await anyio.to_thread.run_sync(self._tag, local, tag, cached.digest)
                return cached
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._manifest_locks.pop(key, None)

    async def _fetch_manifest(self, upstream: Upstream, name: str, reference: str, tag: str | None) -> StoredManifest:
        try:
            manifest = await upstream.get_manifest(name, reference)
        except RegtoolError as exc:
            raise upstream_error(exc, f"manifest {name}:{reference}", ErrorCode.MANIFEST_UNKNOWN) from None
        await anyio.to_thread.run_sync(self._store_manifest, upstream.local_name(name), manifest, tag)
        await self.limits.stored(manifest.digest, manifest.size)
        return StoredManifest(manifest.raw, manifest.media_type, manifest.digest)

    def _store_manifest(self, local: str, manifest: Manifest, tag: str | None) -> None:
        # The blobs it names arrive when they are asked for: a cache holds what its clients pulled.
        self.registry.put_manifest(local, manifest, tag, verify_references=False)

    def _tag(self, local: str, tag: str, digest: Digest) -> None:
        current = self.registry.tag_target(local, tag)
        if current is None or current[0] != digest:
            self.registry.tag_manifest(local, tag, digest)

    # -- tags -------------------------------------------------------------------------------------------

    async def tags(self, request: Request, name: str) -> list[str]:
        upstream = self.upstream(request)
        try:
            return sorted(await upstream.tags(name))
        except NotFoundError:
            raise ApiError(ErrorCode.NAME_UNKNOWN, f"repository {name} not known upstream", detail=name) from None
        except RegtoolError as exc:
            if not is_unreachable(exc):
                raise upstream_error(exc, f"tags of {name}", ErrorCode.NAME_UNKNOWN) from None
            access_logger.warning("proxy: tags of %s from the cache: upstream %s unreachable", name, upstream.registry)
            return await anyio.to_thread.run_sync(self.registry.tags, upstream.local_name(name))

    # -- blobs ------------------------------------------------------------------------------------------

    async def blob(self, request: Request, name: str, digest: Digest) -> tuple[str, Response | None]:
        """``(storage name, None)`` when the blob is cached (the handler serves it as stored), else the response
        that answers it from upstream."""
        upstream = self.upstream(request)
        local = upstream.local_name(name)
        size = await anyio.to_thread.run_sync(self._cached_size, local, digest)
        if size is not None:
            await self.limits.used(digest, size)
            return local, None
        stored = await anyio.to_thread.run_sync(self.registry.blobs.size, digest)
        if stored is not None or request.method == "HEAD":
            # Content is shared by digest, but only a repository the upstream has it in may serve it.
            try:
                upstream_size = await upstream.blob_size(name, digest)
            except RegtoolError as exc:
                raise upstream_error(exc, f"blob {digest}", ErrorCode.BLOB_UNKNOWN) from None
            if upstream_size is None:
                raise ApiError(ErrorCode.BLOB_UNKNOWN, f"blob {digest} unknown upstream", detail=str(digest))
            if stored is not None:
                await anyio.to_thread.run_sync(self.registry.link_blob, local, digest)
                await self.limits.used(digest, stored)
                return local, None
            return local, _head_response(digest, upstream_size)
        # Looked up after the last await before a fill is made: no other request can start one in between.
        fill = self._fills.get((local, digest))
        if fill is not None:
            return local, FillResponse(fill, runner=None, range_header=request.headers.get("range"))
        fill = BlobFill(self.registry, upstream, name, digest, self._fill_threads)
        self._fills[local, digest] = fill

        async def run() -> None:
            try:
                await fill.run()
            finally:
                self._fills.pop((local, digest), None)
            if fill.done and fill.size is not None:
                await self.limits.stored(digest, fill.size)

        return local, FillResponse(fill, runner=run, range_header=request.headers.get("range"))

    def _cached_size(self, local: str, digest: Digest) -> int | None:
        try:
            return self.registry.stat_blob(local, digest)
        except ApiError:
            return None


def _head_response(digest: Digest, size: int) -> Response:
    headers = {
        "Content-Type": "application/octet-stream",
        v2.CONTENT_DIGEST_HEADER: str(digest),
        "Content-Length": str(size),
        "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"',
    }
    return Response(status_code=200, headers=headers)
