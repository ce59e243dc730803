"""uvicorn's httptools protocol with ASGI's zero-copy send extension on plain-HTTP connections, and a bound on
a request's head.

Only the message is new: uvicorn keeps doing all of its response logic (Content-Length accounting, completion,
keep-alive), because after the file has been sent with ``zerocopy.send_file`` the message is finished by handing
uvicorn an empty body. Imported only when httptools is installed (``runner.http_protocol``).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from regtool.server.zerocopy import FOLLOW, SENT, ZEROCOPY, send_file

__all__ = ["MAX_HEAD_BYTES", "ZeroCopyHttpToolsProtocol"]

# The most a request line and its headers may take, as Go's net/http allows (distribution answers 431 beyond it).
# uvicorn's httptools protocol sets no bound: each connection could make the server hold any amount.
MAX_HEAD_BYTES = 1 << 20
_TOO_LARGE = b"request header fields too large"

_Send = Callable[[Any], Awaitable[None]]
# The parts of uvicorn's RequestResponseCycle that the zero-copy sender reads or updates (as in uvicorn 0.54).
_CYCLE_STATE = (
    "send",
    "transport",
    "flow",
    "disconnected",
    "response_started",
    "response_complete",
    "chunked_encoding",
    "expected_content_length",
)


class ZeroCopyHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus ``http.response.zerocopysend`` on plain-HTTP connections; a request
    whose head grows past ``MAX_HEAD_BYTES`` is answered 431 and its connection closed."""

    # Bytes of the current request's head received so far; None once its headers are complete.
    _head_bytes: int | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # A head still incomplete after the parser has taken ``data`` means all of ``data`` was head.
        if self._head_bytes is None or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_LARGE), _TOO_LARGE)
            )
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()
        cycle = self.cycle
        # A websocket upgrade returns before a cycle is made, leaving the previous request's in place. The request
        # task is created but has not run yet, so the scope and the cycle can still be changed.
        if self.scope.get("scheme") != "http" or cycle is None or cycle.scope is not self.scope:
            return
        if not all(hasattr(cycle, name) for name in _CYCLE_STATE):
            return  # another uvicorn than the one this was written against: plain sends, nothing broken
        self.scope["extensions"] = {**(self.scope.get("extensions") or {}), ZEROCOPY: {}}
        # run_asgi hands the app ``self.send`` when the task runs, so an instance attribute set now is what the app
        # gets, and nothing of uvicorn's request start-up is copied here.
        setattr(cycle, "send", _ZeroCopySender(cycle, cycle.send))  # noqa: B010 - shadows a method on purpose


class _ZeroCopySender:
    """The cycle's ``send``: ordinary messages go to uvicorn; zero-copy sends are done here, then finished there."""

    def __init__(self, cycle: RequestResponseCycle, send: _Send) -> None:
        self.cycle = cycle
        self.send = send

    async def __call__(self, message: Any) -> None:
        if message["type"] != ZEROCOPY:
            await self.send(message)
            return
        cycle = self.cycle
        if not cycle.response_started or cycle.response_complete or cycle.chunked_encoding:
            raise RuntimeError(f"{ZEROCOPY} needs a started, unfinished response with a Content-Length")
        file: BinaryIO = message["file"]
        offset = message.get("offset")
        if offset is None:
            offset = file.tell()
        count = message.get("count")
        if count is None:
            count = os.fstat(file.fileno()).st_size - offset
        if count > cycle.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        sent = 0
        if not cycle.disconnected and count > 0:
            try:
                sent = await send_file(cycle.transport, file, offset, count, follow=message.get(FOLLOW))
            finally:
                if sent < count:
                    # Part of the body may be out: the connection cannot carry another response. A client that went
                    # away gets no error, as uvicorn drops what is sent to it.
                    cycle.transport.close()
        message[SENT] = sent
        cycle.expected_content_length -= count
        if not message.get("more_body", False):
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
