"""A scriptable HTTP server on 127.0.0.1 for what a real registry will not do on demand.

It speaks real HTTP over real sockets (so the client's threaded blob path is exercised too): each test maps
``(method, path)`` to a ``Reply`` or a function returning one. A reply can lie about Content-Length, close the
connection early, or stop sending and hold it open. Every request is recorded in ``server.requests`` as
``(method, path_with_query, headers)``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FakeRegistry", "Reply", "fake_registry"]

V2_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_length: int | None = None  # announce this instead of len(body)
    close_after: int | None = None  # send only this many body bytes, then close
    stall: threading.Event | None = None  # once the body is sent, hold the connection open (silent) until set


Handler = Callable[[str, str, dict[str, str], bytes], Reply]


@dataclass
class FakeRegistry:
    url: str
    host: str
    routes: dict[tuple[str, str], Reply | Handler]
    requests: list[tuple[str, str, dict[str, str]]]

    def route(self, method: str, path: str, reply: Reply | Handler) -> None:
        self.routes[(method, path)] = reply


def _handler_class(registry: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def handle_one_request(self) -> None:
            # A TLS ClientHello (the client tries https first on loopback): hang up at once, like a plain server.
            if self.rfile.peek(1)[:1] == b"\x16":  # type: ignore[attr-defined]
                self.close_connection = True
                return
            super().handle_one_request()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            registry.requests.append((self.command, self.path, headers))
            path = self.path.split("?", 1)[0]
            target = registry.routes.get((self.command, self.path)) or registry.routes.get((self.command, path))
            if target is None:
                reply = Reply(404, dict(V2_HEADER), b'{"errors":[{"code":"NOT_FOUND","message":"no route"}]}')
            elif isinstance(target, Reply):
                reply = target
            else:
                reply = target(self.command, self.path, headers, body)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            announced = reply.content_length if reply.content_length is not None else len(reply.body)
            self.send_header("Content-Length", str(announced))
            if reply.close_after is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            data = reply.body if reply.close_after is None else reply.body[: reply.close_after]
            self.wfile.write(data)
            if reply.stall is not None:
                self.wfile.flush()
                reply.stall.wait(60)
            if reply.close_after is not None or announced != len(reply.body):
                self.wfile.flush()
                self.close_connection = True

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

    return _Handler


@contextlib.contextmanager
def fake_registry() -> Iterator[FakeRegistry]:
    registry = FakeRegistry("", "", {}, [])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(registry))
    server.daemon_threads = True
    port = server.server_address[1]
    registry.url = f"http://127.0.0.1:{port}"
    registry.host = f"127.0.0.1:{port}"
    registry.route("GET", "/v2/", Reply(200, dict(V2_HEADER), b"{}"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
