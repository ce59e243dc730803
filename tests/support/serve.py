"""A real ``regtool serve`` for tests: in a background thread, or as a subprocess (for kill -9 tests).

In-process (the usual way). The ``serve`` fixture: import it once in your tests directory's ``conftest.py``
(``from tests.support.serve import serve  # noqa: F401``), then::

    def test_push(serve: RunningServe) -> None:
        httpx.get(f"{serve.url}/v2/")          # serve.url == "http://127.0.0.1:PORT"
        serve.host                              # "127.0.0.1:PORT", for image references
        serve.root                              # the storage root (None for inmemory)
        serve.requests.events()                 # finished requests, oldest first (RequestEvent)
        serve.requests.clear()

    with run_serve(tmp_path / "root", latency_ms=20, enable_v1=False) as server:  # any ServerConfig field
        ...

``run_serve`` builds the app with the real ``create_app(ServerConfig(...))`` and runs it under uvicorn on a
socket bound to 127.0.0.1:0 before the thread starts, so the port is known and free. It returns when the server
accepts requests and stops it (gracefully) on exit. Each ``RequestEvent`` has method, path, query, status,
start/end (``time.monotonic()``), sent/received byte counts; ``RequestLog.max_overlap`` counts how many of the
selected requests were in flight at once (1 means strictly serial). An event is recorded just before the last body
bytes leave, so once a client holds a whole response its request is already in the log. ``serve.app`` is the
Starlette app (``app.state.context`` holds the storage) for tests that must reach inside.

As a subprocess (``python -m regtool serve``, same flags as the CLI)::

    with run_serve_process(tmp_path / "root", "--no-v1") as proc:
        proc.url, proc.host, proc.root, proc.process  # a subprocess.Popen; proc.kill() sends SIGKILL
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from regtool.server.app import create_app
from regtool.server.config import RequestEvent, ServerConfig

__all__ = [
    "RequestEvent",
    "RequestLog",
    "RunningServe",
    "ServeProcess",
    "free_port",
    "run_serve",
    "run_serve_process",
    "serve",
]


class RequestLog:
    """A thread-safe log of finished requests; the server's request observer appends to it."""

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

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    @staticmethod
    def max_overlap(events: list[RequestEvent]) -> int:
        """The largest number of ``events`` in flight at the same moment (1 = strictly one after another)."""
        points = sorted([(e.start, 1) for e in events] + [(e.end, -1) for e in events], key=lambda p: (p[0], p[1]))
        best = current = 0
        for _, step in points:
            current += step
            best = max(best, current)
        return best


@dataclass
class RunningServe:
    """A running in-process server: ``url``, ``host`` (host:port), ``port``, ``root``, ``config``, ``requests``.

    ``app`` is the Starlette application, for tests that need to reach inside (``app.state.context``).
    """

    url: str
    host: str
    port: int
    root: Path | None
    config: ServerConfig
    requests: RequestLog = field(default_factory=RequestLog)
    app: Any = None


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (for subprocesses, which cannot inherit our socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def run_serve(root: Path | None = None, **overrides: Any) -> Iterator[RunningServe]:
    """Run ``create_app(ServerConfig(root=root, **overrides))`` under uvicorn in a thread; stop it on exit.

    Without ``root`` the storage is in memory. ``access_log`` defaults to False here.
    """
    import uvicorn

    log = RequestLog()
    user_observer: Callable[[RequestEvent], None] | None = overrides.pop("observer", None)

    def observe(event: RequestEvent) -> None:
        log(event)
        if user_observer is not None:
            user_observer(event)

    overrides.setdefault("access_log", False)
    overrides.setdefault("storage", "filesystem" if root is not None else "inmemory")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = int(sock.getsockname()[1])
    config = ServerConfig(host="127.0.0.1", port=port, root=root, observer=observe, **overrides)
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"serve-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("regtool serve did not start in a thread")
            time.sleep(0.005)
        yield RunningServe(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", port, root, config, log, app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[RunningServe]:
    """A fresh in-process regtool serve with filesystem storage under ``tmp_path / "registry"``."""
    with run_serve(tmp_path / "registry") as server:
        yield server


@dataclass
class ServeProcess:
    """``regtool serve`` as a subprocess: ``url``, ``host``, ``port``, ``root``, ``process``, ``log_path``."""

    url: str
    host: str
    port: int
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        """SIGKILL, as a crash would; waits until the process is gone."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/v2/")
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def run_serve_process(root: Path, *args: str) -> Iterator[ServeProcess]:
    """Run ``python -m regtool serve --root ROOT --port <free> ARGS...``; stop it (SIGTERM) on exit."""
    root.mkdir(parents=True, exist_ok=True)
    log_path = root.parent / f"{root.name}.serve.log"
    for _attempt in range(3):
        port = free_port()
        command = [sys.executable, "-m", "regtool", "serve", "--root", str(root), "--port", str(port), *args]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ}
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None and not _answers(port):
            time.sleep(0.05)
        if process.poll() is None and _answers(port):
            break
        _stop(process)
    else:
        raise RuntimeError(f"regtool serve did not start; see {log_path}")
    handle = ServeProcess(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", port, root, process, log_path)
    try:
        yield handle
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
