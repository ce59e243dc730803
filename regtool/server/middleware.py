"""The outer ASGI layer of every request: API version header, added latency, access log, request observer,
metrics (``metrics.py``: by the route template Starlette's router leaves in the scope).

It also turns an unexpected exception into a 500 UNKNOWN envelope (with the version header), so even a bug
answers in the registry's error format; client mistakes never get here, handlers answer them with a 4xx.
"""

from __future__ import annotations

import logging
import time

import anyio
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regtool.protocol import v2
from regtool.protocol.errcodes import ErrorCode, RegistryErrorItem, encode_v2_errors
from regtool.server.config import RequestEvent, ServerConfig
from regtool.server.metrics import ServerMetrics
from regtool.server.zerocopy import SENT, ZEROCOPY

__all__ = ["RegistryMiddleware", "access_logger"]

access_logger = logging.getLogger("regtool.server.access")
error_logger = logging.getLogger("regtool.server")

_VERSION_HEADER = (v2.API_VERSION_HEADER.lower().encode(), v2.API_VERSION.encode())


class RegistryMiddleware:
    def __init__(self, app: ASGIApp, config: ServerConfig, metrics: ServerMetrics | None = None) -> None:
        self.app = app
        self.config = config
        self.metrics = metrics
        self.latency = config.latency_ms / 1000
        self.extra_headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in config.response_headers
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        status = 0
        sent = 0
        received = 0
        version_header = self.config.enable_v2

        recorded = False
        if self.metrics is not None:
            self.metrics.started(scope["method"], scope["path"])

        def finish() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                if self.metrics is not None:
                    self.metrics.finished(scope["method"], scope["path"])
                self._record(scope, status, start, time.monotonic(), sent, received)

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def observing_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if version_header:
                    headers.append(_VERSION_HEADER)
                if self.extra_headers:
                    present = {name.lower() for name, _ in headers}
                    headers += [(name, value) for name, value in self.extra_headers if name not in present]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                if not message.get("more_body", False):
                    # Record before the last bytes leave, so a client that has the whole response always finds
                    # its request in the observer's log.
                    finish()
            elif message["type"] == ZEROCOPY:
                # Counted once sent: the server says how much left (SENT), fewer bytes when the client went away.
                await send(message)
                sent += message.get(SENT, message.get("count", 0))
                if not message.get("more_body", False):
                    finish()
                return
            await send(message)

        try:
            if self.latency:
                await anyio.sleep(self.latency)
            await self.app(scope, counting_receive, observing_send)
        except ClientDisconnect:
            status = status or 499
        except Exception:
            error_logger.exception("unexpected error on %s %s", scope["method"], scope["path"])
            if status == 0:
                body = encode_v2_errors([RegistryErrorItem(ErrorCode.UNKNOWN.code, "internal server error")])
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await observing_send({"type": "http.response.start", "status": 500, "headers": headers})
                await observing_send({"type": "http.response.body", "body": body})
        finally:
            finish()

    def _record(self, scope: Scope, status: int, start: float, end: float, sent: int, received: int) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        if self.config.access_log and access_logger.isEnabledFor(logging.INFO):
            client = scope.get("client") or ("-", 0)
            target = scope["path"] + (f"?{query}" if query else "")
            access_logger.info(
                '%s "%s %s" %d %d %d %.3fs', client[0], scope["method"], target, status, received, sent, end - start
            )
        if self.metrics is not None:
            route = getattr(scope.get("route"), "path", None)
            self.metrics.observe(scope["method"], route, status, end - start, sent, received)
        if self.config.observer is not None:
            event = RequestEvent(scope["method"], scope["path"], query, status, start, end, sent, received)
            try:
                self.config.observer(event)
            except Exception:
                error_logger.exception("request observer failed on %s %s", scope["method"], scope["path"])
