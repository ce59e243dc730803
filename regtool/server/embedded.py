"""``regtool serve`` inside this process, on a free 127.0.0.1 port, in a background thread.

``regtool demo``, the benchmarks and the tests (``tests/support/serve.py``) all need a real registry that starts
and stops in a moment and whose requests they can observe::

    with embedded_serve(Path("/tmp/registry"), latency_ms=50) as server:
        server.url                                  # "http://127.0.0.1:PORT"; server.host is "127.0.0.1:PORT"
        ...
        layers = server.requests.events("GET", "/layer")
        RequestLog.max_overlap(layers)              # 1: no two were in flight at once

The socket is bound to port 0 before the thread starts, so the port is known and free; the context manager
returns once the server accepts requests and stops it gracefully on exit.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from regtool.errors import RegtoolError
from regtool.server.app import create_app
from regtool.server.config import RequestEvent, RequestObserver, ServerConfig
from regtool.server.runner import uvicorn_config

__all__ = ["EmbeddedServe", "RequestLog", "embedded_serve"]


class RequestLog:
    """A thread-safe log of finished requests: the server's request observer appends to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[RequestEvent] = []

    def __call__(self, event: RequestEvent) -> None:
        with self._lock:
            self._events.append(event)

    def events(self, method: str | None = None, path_contains: str | None = None) -> list[RequestEvent]:
        """Finished requests in order of completion, optionally only one method / paths containing a string."""
        with self._lock:
            events = list(self._events)
        return [
            e
            for e in events
            if (method is None or e.method == method) and (path_contains is None or path_contains in e.path)
        ]

    def take(self) -> list[RequestEvent]:
        """Every request logged so far, and an empty log afterwards."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def clear(self) -> None:
        self.take()

    @staticmethod
    def max_overlap(events: list[RequestEvent]) -> int:
        """The largest number of ``events`` in flight at the same moment (1 = strictly one after another)."""
        # At equal times an end (-1) sorts before a start (+1): touching requests do not overlap.
        points = sorted([(e.start, 1) for e in events] + [(e.end, -1) for e in events])
        best = current = 0
        for _, step in points:
            current += step
            best = max(best, current)
        return best


@dataclass(frozen=True)
class EmbeddedServe:
    """A running embedded registry: ``url``, ``host`` (``127.0.0.1:PORT``), ``port``, ``root``, ``config``,
    its ``requests`` log, and the Starlette ``app`` (``app.state.context`` holds the storage)."""

    url: str
    host: str
    port: int
    root: Path | None
    config: ServerConfig
    requests: RequestLog = field(default_factory=RequestLog)
    app: Any = None


@contextlib.contextmanager
def embedded_serve(
    root: Path | None = None,
    *,
    log_level: str = "warning",
    uvicorn_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> Iterator[EmbeddedServe]:
    """Run ``create_app(ServerConfig(root=root, **overrides))`` under uvicorn in a thread; stop it on exit.

    Without ``root`` the storage is in memory. An ``observer`` in ``overrides`` sees every request too. With
    ``tls_cert``/``tls_key`` it serves HTTPS (``url`` says so); ``uvicorn_options`` go to ``uvicorn.Config``
    (e.g. ``ssl_ca_certs`` for client certificates).
    """
    log = RequestLog()
    user_observer: RequestObserver | None = overrides.pop("observer", None)

    def observe(event: RequestEvent) -> None:
        log(event)
        if user_observer is not None:
            user_observer(event)

    overrides.setdefault("storage", "filesystem" if root is not None else "inmemory")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = int(sock.getsockname()[1])
        config = ServerConfig(host="127.0.0.1", port=port, root=root, observer=observe, **overrides)
        app: Starlette = create_app(config)
        options = uvicorn_options or {}
        server = uvicorn.Server(
            uvicorn_config(app, tls_cert=config.tls_cert, tls_key=config.tls_key, log_level=log_level, **options)
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"serve-{port}", daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RegtoolError(f"the embedded registry on 127.0.0.1:{port} did not start")
                time.sleep(0.005)
            scheme = "https" if config.tls_cert is not None else "http"
            yield EmbeddedServe(f"{scheme}://127.0.0.1:{port}", f"127.0.0.1:{port}", port, root, config, log, app)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    finally:
        sock.close()
