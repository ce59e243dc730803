"""Moving bytes between sockets and storage in large chunks, with the blocking file work in worker threads.

``StreamResponse`` sends part or all of a stored file (blob GET, v1 layer GET); ``receive_into`` appends a request
body to a ``FileWriter`` while hashing it (upload PATCH/PUT/POST). Chunks are 1 MiB: with Starlette's default
64 KiB, a blob GET costs ~14% more wall time than distribution; at 1 MiB the difference is gone. Memory stays
flat: at most a couple of chunks are held per request, whatever the blob size.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import BinaryIO

import anyio
from anyio import to_thread
from anyio.streams.memory import MemoryObjectSendStream
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from regtool.digest import DigestVerifier
from regtool.protocol.errcodes import ErrorCode
from regtool.protocol.ranges import parse_range_request, unsatisfied_range
from regtool.server.errors import ApiError
from regtool.server.storage.driver import FileWriter
from regtool.server.zerocopy import ZEROCOPY, zerocopy_available

__all__ = ["CHUNK_SIZE", "ByteRange", "StreamResponse", "cancel_on_disconnect", "parse_range", "receive_into"]

CHUNK_SIZE = 1024 * 1024
READ_AHEAD = 2  # chunks read ahead of the socket

ByteRange = tuple[int, int]  # first and last byte, inclusive


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range of a ``Range`` header (RFC 9110 §14.1.2) for a file of ``size`` bytes.

    None means the whole file. A malformed, multi-part or unsatisfiable range raises 416 RANGE_INVALID with
    ``Content-Range: bytes */<size>``.
    """
    if header is None:
        return None
    byte_range = parse_range_request(header, size)
    if byte_range is None:
        raise ApiError(
            ErrorCode.RANGE_INVALID,
            f"invalid or unsatisfiable range {header[:80]!r} for {size} bytes",
            headers={"Content-Range": unsatisfied_range(size)},
        )
    return byte_range


class StreamResponse(Response):
    """Send ``length`` bytes of a file from ``offset``; ``opener(offset)`` opens it (in a worker thread).

    HEAD requests get the headers only. The caller sets Content-Length, Content-Type and friends in
    ``headers``; ``opener`` is called only when there is a body to send.
    """

    def __init__(
        self,
        opener: Callable[[int], BinaryIO],
        offset: int,
        length: int,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.opener = opener
        self.offset = offset
        self.length = length
        self.status_code = status_code
        self.background = None
        self.init_headers({**(headers or {}), "Content-Length": str(length)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        if scope.get("method") == "HEAD" or self.length == 0:
            await send(start)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        # Opened before the status line goes out, so a file that vanished still gets a proper error response.
        stream = await to_thread.run_sync(self.opener, self.offset)
        try:
            await send(start)
            if zerocopy_available(scope) and _has_descriptor(stream):
                await self._send_zero_copy(stream, send)
                return
            # Read ahead in a worker thread while the previous chunk is being sent, so the socket never waits
            # for the disk (a read-then-send loop left the connection idle ~30% of the time).
            sender, receiver = anyio.create_memory_object_stream[bytes](READ_AHEAD)
            async with anyio.create_task_group() as group:
                group.start_soon(self._read_into, stream, sender)
                group.start_soon(cancel_on_disconnect, receive, group.cancel_scope)
                async with receiver:
                    remaining = self.length
                    async for chunk in receiver:
                        remaining -= len(chunk)
                        await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
                group.cancel_scope.cancel()
        finally:
            # Closed right here, not in a thread: closing a file opened for reading does no I/O, and an await would be
            # cut short when uvicorn cancels the request (a shutdown whose graceful period a stalled client outlived).
            stream.close()

    async def _send_zero_copy(self, stream: BinaryIO, send: Send) -> None:
        # sendfile(2) from the page cache, no copy through Python (zerocopy.py). The last byte goes the ordinary
        # way so that, as for chunked sends, the request is recorded (access log, observers) before the client can
        # have the whole body.
        head = self.length - 1
        await send({"type": ZEROCOPY, "file": stream, "offset": self.offset, "count": head, "more_body": True})
        last = await to_thread.run_sync(os.pread, stream.fileno(), 1, self.offset + head)
        if len(last) != 1:
            raise OSError(f"stored file ended before byte {self.offset + head}")
        await send({"type": "http.response.body", "body": last, "more_body": False})

    async def _read_into(self, stream: BinaryIO, sender: MemoryObjectSendStream[bytes]) -> None:
        async with sender:
            remaining = self.length
            while remaining > 0:
                chunk = await to_thread.run_sync(stream.read, min(CHUNK_SIZE, remaining))
                if not chunk:
                    raise OSError(f"stored file ended {remaining} bytes early")
                remaining -= len(chunk)
                await sender.send(chunk)


def _has_descriptor(stream: BinaryIO) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError):  # in-memory storage: io.UnsupportedOperation
        return False
    return True


async def cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` when the client goes away (a task beside a response that streams a body)."""
    # uvicorn drops the body of a send() after the client went away instead of raising, so without this a
    # dropped download would still read the whole blob from disk.
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def _write_and_hash(writer: FileWriter, hasher: DigestVerifier | None, chunks: list[bytes]) -> None:
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    writer.write(data)
    if hasher is not None:
        hasher.update(data)


class BodyStalled(ClientDisconnect):
    """A request body that sent nothing for the idle timeout: handled as a disconnect, and answered if the
    handler can."""


async def receive_into(
    request: Request, writer: FileWriter, hasher: DigestVerifier | None, *, idle_timeout: float | None = None
) -> int:
    """Append the request body to ``writer`` (updating ``hasher``) in ~1 MiB writes; return the bytes written.

    Writing and hashing run in a worker thread (hashlib releases the GIL on big buffers), so the event loop keeps
    serving other requests. A body that sends nothing for ``idle_timeout`` seconds is handled as a client that
    disconnected (BodyStalled, a ClientDisconnect; what arrived kept): it would hold its upload's lock for good.
    """
    total = 0
    pending: list[bytes] = []
    pending_size = 0
    body = request.stream().__aiter__()
    try:
        while True:
            try:
                with anyio.fail_after(idle_timeout):
                    chunk = await body.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise BodyStalled() from None
            if not chunk:
                continue
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= CHUNK_SIZE:
                await to_thread.run_sync(_write_and_hash, writer, hasher, pending)
                total += pending_size
                pending, pending_size = [], 0
    except ClientDisconnect:
        # Keep every byte that arrived, so a client that resumes (GET upload status, then
        # PATCH from there) resends nothing it had sent; a ranged chunk is cut back by the caller anyway.
        if pending:
            await to_thread.run_sync(_write_and_hash, writer, hasher, pending)
        raise
    if pending:
        await to_thread.run_sync(_write_and_hash, writer, hasher, pending)
        total += pending_size
    return total
