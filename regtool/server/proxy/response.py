"""``FillResponse``: a blob GET answered from a ``BlobFill`` while the blob is still arriving from upstream.

The request that started the fill runs it here, beside its own response, and keeps running it when its client
goes away: the fill belongs to every request that joined it, and a blob fetched this far is worth caching.
Requests that joined only read. Until the upstream answered nothing is sent, so an upstream refusal still
becomes an ordinary error envelope; after that, a blob that fails verification aborts the response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from regtool.protocol import v2
from regtool.protocol.errcodes import ErrorCode
from regtool.protocol.ranges import content_range
from regtool.server.errors import ApiError
from regtool.server.proxy.fill import BlobFill, FillFailed, FillReader
from regtool.server.streaming import CHUNK_SIZE, cancel_on_disconnect, parse_range
from regtool.server.zerocopy import FOLLOW, ZEROCOPY, zerocopy_available

__all__ = ["FillResponse"]

logger = logging.getLogger("regtool.server")


class FillResponse(Response):
    """Send the blob (or the ``Range`` asked for) as ``fill`` brings it in; ``runner`` (the request that started
    the fill) runs it, others pass None."""

    def __init__(
        self, fill: BlobFill, *, runner: Callable[[], Coroutine[Any, Any, None]] | None, range_header: str | None
    ) -> None:
        self.fill = fill
        self.runner = runner
        self.range_header = range_header
        self.status_code = 200
        self.background = None
        self.init_headers({})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:
            if self.runner is not None:
                group.start_soon(self.runner)
            await self._respond(scope, receive, send)

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        fill = self.fill
        while not (fill.started or fill.finished) or (fill.size is None and not fill.finished):
            await fill.changed()
        if fill.error is not None or fill.failed or fill.size is None:
            error = fill.error or ApiError(
                ErrorCode.UNKNOWN, f"blob {fill.digest} did not arrive intact from the upstream", status=502
            )
            await _send_error(error, scope, receive, send)
            return
        size = fill.size
        try:
            byte_range = parse_range(self.range_header, size)
        except ApiError as error:
            await _send_error(error, scope, receive, send)
            return
        headers = {
            "Content-Type": "application/octet-stream",
            v2.CONTENT_DIGEST_HEADER: str(fill.digest),
            "Accept-Ranges": "bytes",
            "ETag": f'"{fill.digest}"',
            "Cache-Control": "max-age=31536000",
        }
        first, last = (0, size - 1) if byte_range is None else byte_range
        if byte_range is not None:
            headers["Content-Range"] = content_range(first, last, size)
        self.status_code = 200 if byte_range is None else 206
        self.init_headers({**headers, "Content-Length": str(last - first + 1)})
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if size == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        reader = FillReader(fill, first, last + 1)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(cancel_on_disconnect, receive, group.cancel_scope)
                await _send_body(reader, scope, send)
                group.cancel_scope.cancel()
        finally:
            reader.close()


async def _send_body(reader: FillReader, scope: Scope, send: Send) -> None:
    zero_copy = zerocopy_available(scope)
    try:
        while (count := await reader.ready()) > 0:
            last = reader.position + count >= reader.end
            stream = await reader.descriptor_file() if zero_copy and (count > 1 or not last) else None
            if stream is not None:
                # All but the response's last byte in one sendfile(2) transfer from the file being filled, whose
                # thread follows the fill as it grows; the last byte goes the ordinary way, as in StreamResponse,
                # so the request is recorded before the client has it.
                span = reader.end - 1 - reader.position
                message = {"type": ZEROCOPY, "file": stream, "offset": reader.position, "count": span}
                if reader.fill.readable_while_filling:
                    message[FOLLOW] = reader.fill.follow
                await send({**message, "more_body": True})
                reader.position += span
                continue
            chunk = await reader.read(min(count, CHUNK_SIZE))
            await send({"type": "http.response.body", "body": chunk, "more_body": reader.position < reader.end})
    except FillFailed as exc:
        # Returning short of Content-Length makes the server close the connection: the client sees a transfer
        # that failed, never a complete response with bad bytes.
        logger.warning("proxy: aborted %s %s: %s", scope.get("method"), scope.get("path"), exc)


async def _send_error(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    from regtool.server.app import error_response

    await error_response(error)(scope, receive, send)
