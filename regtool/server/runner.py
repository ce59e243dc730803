"""Run the app under uvicorn in the foreground until SIGINT/SIGTERM, then shut down gracefully.

uvicorn re-raises a captured signal after its shutdown, so the process would die by SIGTERM (exit -15) even
after a clean stop; here the signals only ask the server to exit, and ``run`` returns normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

__all__ = ["http_protocol", "run", "uvicorn_config"]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def http_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol with zero-copy blob sends (``uvicorn_protocol.py``), else uvicorn's own choice."""
    try:
        from regtool.server.uvicorn_protocol import ZeroCopyHttpToolsProtocol
    except ImportError:  # httptools is missing (it comes with uvicorn[standard] on CPython)
        return "auto"
    return ZeroCopyHttpToolsProtocol


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; OSError (e.g. address in use) is raised here, not in uvicorn."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def uvicorn_config(
    app: ASGIApp,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    log_level: str = "warning",
    **options: Any,
) -> uvicorn.Config:
    """How regtool runs ``app`` under uvicorn, whether from ``regtool serve``, embedded, or in a test.

    Zero-copy blob sends (``http_protocol``), no access log of uvicorn's own (the app logs), the app's lifespan
    (``create_app``'s: it closes the pull-through cache's upstream connections at shutdown), a 5 s graceful
    shutdown, HTTPS with ``tls_cert``/``tls_key`` (PEM files). ``options`` go to ``uvicorn.Config``.
    """
    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="auto",
        timeout_graceful_shutdown=5,
        # HTTPS when a certificate is configured.
        ssl_certfile=str(tls_cert) if tls_cert is not None else None,
        ssl_keyfile=str(tls_key) if tls_key is not None else None,
        http=http_protocol(),
        **options,
    )


def run(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    sock: socket.socket | None = None,
    debug: tuple[ASGIApp, socket.socket] | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` (httptools + uvloop when installed) until a signal asks to stop.

    With ``tls_cert``/``tls_key`` (PEM files) it serves HTTPS. ``sock`` is a socket from ``bind`` (closed here
    when the server stops); without it the address is bound here, and OSError is raised when it cannot be.
    ``debug`` is a second app and its bound socket (the debug listener: plain HTTP, in a thread of its own,
    stopped with the main server).
    """
    if sock is None:
        sock = bind(host, port)
    config = uvicorn_config(app, tls_cert=tls_cert, tls_key=tls_key, host=host, port=port)
    logging.getLogger("uvicorn.error").addFilter(_drop_tls_probes)
    side: tuple[_Server, threading.Thread, socket.socket] | None = None
    if debug is not None:
        # Not the main thread: _Server leaves the signals to the main server, which stops this one after it.
        debug_app, debug_sock = debug
        debug_server = _Server(uvicorn_config(debug_app))
        thread = threading.Thread(target=debug_server.run, kwargs={"sockets": [debug_sock]}, name="debug", daemon=True)
        thread.start()
        side = (debug_server, thread, debug_sock)
    try:
        _Server(config).run(sockets=[sock])
    finally:
        sock.close()
        if side is not None:
            side[0].should_exit = True
            side[1].join(timeout=10)
            side[2].close()


def _drop_tls_probes(record: logging.LogRecord) -> bool:
    # docker and skopeo try HTTPS first on a plain-HTTP registry; uvicorn would warn about each TLS hello.
    return record.getMessage() != "Invalid HTTP request received."
