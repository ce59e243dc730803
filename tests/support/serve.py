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

``run_serve`` is ``regtool.server.embedded.embedded_serve`` with the access log off (``regtool demo`` runs the
same code): it builds the app with the real ``create_app(ServerConfig(...))`` and runs it under uvicorn on a
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
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from regtool.server.config import RequestEvent
from regtool.server.embedded import EmbeddedServe, RequestLog, embedded_serve
from tests.support.distribution import free_port, http_status, stop_process

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


# The in-process server is regtool's own (regtool/server/embedded.py, which ``regtool demo`` uses too).
RunningServe = EmbeddedServe


@contextlib.contextmanager
def run_serve(root: Path | None = None, **overrides: Any) -> Iterator[RunningServe]:
    """Run ``create_app(ServerConfig(root=root, **overrides))`` under uvicorn in a thread; stop it on exit.

    Without ``root`` the storage is in memory. ``access_log`` defaults to False here.
    """
    overrides.setdefault("access_log", False)
    with embedded_serve(root, **overrides) as server:
        yield server


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


@contextlib.contextmanager
def run_serve_process(
    root: Path, *args: str, log_path: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[ServeProcess]:
    """Run ``python -m regtool serve --root ROOT --port <free> ARGS...``; stop it (SIGTERM) on exit.

    ``log_path`` (default: beside the root) takes its output; instances sharing one root need one each. ``env``
    is added to the environment.
    """
    root.mkdir(parents=True, exist_ok=True)
    log_path = log_path or root.parent / f"{root.name}.serve.log"
    for _attempt in range(3):
        port = free_port()
        # Object storage keeps nothing under the root (the CLI refuses --root with it); the log still goes there.
        on_s3 = any(a == "--storage" and b == "s3" for a, b in itertools.pairwise(args))
        where = [] if on_s3 else ["--root", str(root)]
        command = [sys.executable, "-m", "regtool", "serve", *where, "--port", str(port), *args]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None and http_status(port) is None:
            time.sleep(0.05)
        if process.poll() is None and http_status(port) is not None:
            break
        stop_process(process, timeout=10)
    else:
        raise RuntimeError(f"regtool serve did not start; see {log_path}")
    handle = ServeProcess(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", port, root, process, log_path)
    try:
        yield handle
    finally:
        stop_process(process, timeout=10)
