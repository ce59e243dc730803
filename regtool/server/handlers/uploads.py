"""Blob uploads: end-4a/4b (POST), end-11 (mount), end-5 (PATCH), end-13 (GET status), end-6 (PUT close), DELETE.

An upload's bytes go to ``uploads/<id>/data`` and are hashed as they arrive; PUT verifies the digest and only
then moves the file into the blob store (``Registry.commit_upload``). Requests on one upload are serialised by a
per-upload lock, so chunks cannot interleave.
"""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response

from regtool import grammar
from regtool.digest import Digest
from regtool.protocol import v2
from regtool.protocol.errcodes import ErrorCode
from regtool.protocol.ranges import parse_chunk_range, upload_progress
from regtool.server.auth.base import Access
from regtool.server.errors import ApiError
from regtool.server.handlers.base import (
    authorize,
    context,
    empty,
    query_digest,
    repository,
    require_writable,
    run_sync,
)
from regtool.server.storage.driver import ObjectStoreDriver
from regtool.server.streaming import BodyStalled, receive_into

__all__ = ["cancel_upload", "close_upload", "patch_upload", "start_upload", "upload_status"]


def _session_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "Location": v2.upload_path(name, upload_id),
        "Range": upload_progress(size),
        v2.UPLOAD_UUID_HEADER: upload_id,
    }


def _blob_created(name: str, digest: Digest) -> Response:
    return empty(201, {"Location": v2.blob_path(name, str(digest)), v2.CONTENT_DIGEST_HEADER: str(digest)})


def _content_range(request: Request) -> tuple[int, int] | None:
    header = request.headers.get("content-range")
    if header is None:
        return None
    chunk = parse_chunk_range(header)
    if chunk is None:
        raise ApiError(ErrorCode.RANGE_INVALID, f"malformed Content-Range {header[:80]!r}: expected <start>-<end>")
    return chunk


async def _append(request: Request, name: str, upload_id: str, size: int) -> int:
    """Append the body to the upload (checking Content-Range against ``size``); return the new size."""
    registry = context(request).registry
    chunk_range = _content_range(request)
    if chunk_range is not None and chunk_range[0] != size:
        raise ApiError(
            ErrorCode.RANGE_INVALID,
            f"chunk starts at {chunk_range[0]} but upload {upload_id} has {size} bytes",
            headers=_session_headers(name, upload_id, size),
        )
    writer = await run_sync(registry.upload_writer, upload_id)
    hasher = registry.hashes.for_append(upload_id, size)
    idle = context(request).config.body_timeout
    try:
        written = await receive_into(request, writer, hasher, idle_timeout=idle)
    except BaseException as exc:
        if chunk_range is not None:
            # A chunk with a range is all or nothing: the client resends it from the same offset.
            await run_sync(writer.truncate, size)
            registry.hashes.drop(upload_id)
        if isinstance(exc, BodyStalled):
            raise ApiError(
                ErrorCode.BLOB_UPLOAD_INVALID,
                f"upload {upload_id}: the body sent nothing for {idle:g} s; what arrived is kept (GET the upload's "
                "status to resume)",
            ) from None
        raise
    finally:
        # Shielded: a client that disconnects cancels this scope, and the writer must still be closed.
        with anyio.CancelScope(shield=True):
            await run_sync(writer.close)
    if chunk_range is not None and written != chunk_range[1] - chunk_range[0] + 1:
        truncate_writer = await run_sync(registry.upload_writer, upload_id)
        await run_sync(truncate_writer.truncate, size)
        await run_sync(truncate_writer.close)
        registry.hashes.drop(upload_id)
        raise ApiError(
            ErrorCode.RANGE_INVALID,
            f"Content-Range {chunk_range[0]}-{chunk_range[1]} does not match the {written} bytes sent",
            headers=_session_headers(name, upload_id, size),
        )
    return size + written


async def start_upload(request: Request) -> Response:
    """POST ``/v2/<name>/blobs/uploads/``: a session (202), a monolithic upload (``?digest=``, 201) or a mount."""
    name = repository(request)
    await authorize(request, Access.push(name), Access.pull(name))
    require_writable(request, "upload blobs")
    registry = context(request).registry
    mount = query_digest(request, "mount")
    source = request.query_params.get("from")
    if mount is not None and source is not None:
        if not grammar.is_valid_name(source):
            raise ApiError(ErrorCode.NAME_INVALID, f"invalid mount source repository {source[:100]!r}")
        await authorize(request, Access.pull(source))
        if await run_sync(registry.mount_blob, name, source, mount):
            return _blob_created(name, mount)
    digest = query_digest(request, "digest") if mount is None else None
    upload_id = await run_sync(registry.create_upload, name)
    if digest is None:
        headers = _session_headers(name, upload_id, 0)
        driver = context(request).driver
        if isinstance(driver, ObjectStoreDriver):
            # Smaller chunks work (the store keeps them until a part is full), but each costs a rewrite of that
            # partial part: chunks of a whole part go straight through.
            headers[v2.OCI_CHUNK_MIN_LENGTH_HEADER] = str(driver.chunk_size)
        return empty(202, headers)
    async with context(request).upload_locks(upload_id):
        try:
            size = await _append(request, name, upload_id, 0)
            await run_sync(registry.commit_upload, name, upload_id, digest, size)
        except BaseException:
            await run_sync(registry.cancel_upload, upload_id)
            raise
    return _blob_created(name, digest)


async def patch_upload(request: Request) -> Response:
    """PATCH ``/v2/<name>/blobs/uploads/<id>``: append a chunk (Content-Range) or a stream -> 202."""
    name = repository(request)
    upload_id = str(request.path_params["uuid"])
    await authorize(request, Access.push(name), Access.pull(name))
    require_writable(request, "upload blobs")
    registry = context(request).registry
    async with context(request).upload_locks(upload_id):
        size = await run_sync(registry.upload_size, name, upload_id)
        size = await _append(request, name, upload_id, size)
    return empty(202, _session_headers(name, upload_id, size))


async def upload_status(request: Request) -> Response:
    """GET ``/v2/<name>/blobs/uploads/<id>``: 204 with the Range received so far."""
    name = repository(request)
    upload_id = str(request.path_params["uuid"])
    await authorize(request, Access.push(name), Access.pull(name))
    size = await run_sync(context(request).registry.upload_size, name, upload_id)
    return empty(204, _session_headers(name, upload_id, size))


async def close_upload(request: Request) -> Response:
    """PUT ``/v2/<name>/blobs/uploads/<id>?digest=``: append an optional last chunk, verify, store -> 201."""
    name = repository(request)
    upload_id = str(request.path_params["uuid"])
    await authorize(request, Access.push(name), Access.pull(name))
    require_writable(request, "upload blobs")
    digest = query_digest(request, "digest")
    if digest is None:
        raise ApiError(ErrorCode.DIGEST_INVALID, f"closing upload {upload_id[:80]} needs ?digest=")
    registry = context(request).registry
    locks = context(request).upload_locks
    async with locks(upload_id):
        try:
            size = await run_sync(registry.upload_size, name, upload_id)
        except ApiError as exc:
            # A close repeated after its upload was stored (the answer was lost, or the retry went to another
            # instance) is answered as the first one was: one that brings no bytes, as a retried close does. One
            # that brings a chunk is for a session that must exist; its bytes are not thrown away unchecked.
            if exc.code is not ErrorCode.BLOB_UPLOAD_UNKNOWN or _has_body(request):
                raise
            if await run_sync(registry.committed_upload, name, upload_id, digest) is None:
                raise
            return _blob_created(name, digest)
        size = await _append(request, name, upload_id, size)
        await run_sync(registry.commit_upload, name, upload_id, digest, size)
    return _blob_created(name, digest)


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and grammar.parse_decimal(length) != 0)


async def cancel_upload(request: Request) -> Response:
    """DELETE ``/v2/<name>/blobs/uploads/<id>``: drop the upload -> 204; unknown -> 404 BLOB_UPLOAD_UNKNOWN."""
    name = repository(request)
    upload_id = str(request.path_params["uuid"])
    await authorize(request, Access.push(name))
    require_writable(request, "upload blobs")
    registry = context(request).registry
    async with context(request).upload_locks(upload_id):
        await run_sync(registry.upload_size, name, upload_id)
        await run_sync(registry.cancel_upload, upload_id)
    return empty(204)
