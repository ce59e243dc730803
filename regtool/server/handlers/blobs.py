"""Blobs: end-2 (GET/HEAD, with Range) and end-10 (DELETE)."""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from regtool.protocol import v2
from regtool.protocol.ranges import content_range
from regtool.server.auth.base import Access
from regtool.server.handlers.base import (
    authorize,
    context,
    empty,
    parse_digest,
    repository,
    require_deletable,
    run_sync,
)
from regtool.server.storage import paths
from regtool.server.storage.driver import ObjectStoreDriver
from regtool.server.streaming import StreamResponse, parse_range

__all__ = ["delete_blob", "get_blob"]


async def get_blob(request: Request) -> Response:
    """GET/HEAD ``/v2/<name>/blobs/<digest>``: 200 (or 206 for a Range), streamed in large chunks."""
    name = repository(request)
    digest = parse_digest(request.path_params["digest"])
    await authorize(request, Access.pull(name))
    registry = context(request).registry
    proxy = context(request).proxy
    if proxy is not None:
        # A pull-through cache: a miss is answered from upstream; a hit is served as any stored blob.
        name, missed = await proxy.blob(request, name, digest)
        if missed is not None:
            return missed
    driver = context(request).driver
    if context(request).config.storage_redirect and isinstance(driver, ObjectStoreDriver):
        # The client fetches the bytes (and its Range) from the store itself: no blob byte passes through here,
        # and the size is the store's to tell, so the repository's link is the one thing looked up.
        await run_sync(registry.require_linked, name, digest)
        location = driver.presigned_url(paths.blob_data(digest), request.method)
        return empty(307, {"Location": location, v2.CONTENT_DIGEST_HEADER: str(digest)})
    size = await run_sync(registry.stat_blob, name, digest)
    headers = {
        "Content-Type": "application/octet-stream",
        v2.CONTENT_DIGEST_HEADER: str(digest),
        "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000",
    }
    byte_range = parse_range(request.headers.get("range"), size)
    opener = partial(registry.open_blob, name, digest)
    if byte_range is None:
        return StreamResponse(opener, 0, size, headers=headers)
    first, last = byte_range
    headers["Content-Range"] = content_range(first, last, size)
    return StreamResponse(opener, first, last - first + 1, status_code=206, headers=headers)


async def delete_blob(request: Request) -> Response:
    """DELETE ``/v2/<name>/blobs/<digest>``: unlink from the repository -> 202; unknown -> 404 BLOB_UNKNOWN."""
    name = repository(request)
    digest = parse_digest(request.path_params["digest"])
    await authorize(request, Access.delete(name))
    require_deletable(request, "delete blobs")
    await run_sync(context(request).registry.unlink_blob, name, digest)
    return empty(202, {v2.CONTENT_DIGEST_HEADER: str(digest)})
