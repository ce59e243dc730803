"""Helpers for the CLI tests: run ``regtool`` as a subprocess, and a tiny scripted HTTP server.

The scripted server answers what a real registry will not on demand (a tampered blob, a 401 on everything, a
web server that is no registry). It runs in a thread on a free 127.0.0.1 port.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

__all__ = [
    "Reply",
    "Scripted",
    "assert_user_error",
    "hanging_server",
    "in_process",
    "regtool",
    "regtool_bytes",
    "scripted_server",
    "start_regtool",
]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGTOOL_") and "proxy" not in k.lower()}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def start_regtool(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """``python -m regtool ARGS`` started in the background (stdout and stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "regtool", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(None),
    )


def in_process(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run the CLI in this process (much quicker than a subprocess); same result shape as :func:`regtool`.

    Use it for commands without ``-v`` (logging handlers are process-wide) and with absolute paths or a
    ``monkeypatch.chdir``. ``stdout`` is decoded as UTF-8; compare exact bytes through :func:`regtool`.
    """
    from regtool.cli import app

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    err = io.StringIO()
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    code: int
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                app(list(args), prog_name="regtool")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdin = saved_stdin
    out.flush()
    raw = out.buffer.getvalue()  # type: ignore[attr-defined]
    out.detach()
    return subprocess.CompletedProcess(list(args), code, raw.decode("utf-8", "replace"), err.getvalue())


def regtool(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m regtool ARGS`` with a clean environment (no REGTOOL_* variables, no proxies)."""
    return subprocess.run(
        [sys.executable, "-m", "regtool", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(env),
        check=False,
    )


def regtool_bytes(*args: str, cwd: Path, stdout: int | IO[bytes] = subprocess.PIPE) -> subprocess.CompletedProcess[Any]:
    """:func:`regtool` with stdout as given (a pipe, a file descriptor) and kept as bytes; stderr is decoded."""
    proc = subprocess.run(
        [sys.executable, "-m", "regtool", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=120,
        env=_env(None),
        check=False,
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, proc.stderr.decode())


@contextmanager
def hanging_server() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a socket that accepts connections and never answers (nor closes them)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with suppress(TimeoutError, OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def assert_user_error(proc: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """Exit code ``code``, no traceback, exactly one ``error: ...`` line on stderr; returns that line."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@dataclass(frozen=True)
class Reply:
    """An answer; ``stall`` seconds pass between the headers and the body (cut short when the server stops)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0


@dataclass
class Scripted:
    """The routes (path -> Reply; ``default`` for the rest) and what was asked, in order."""

    url: str
    host: str
    routes: dict[str, Reply]
    default: Reply
    seen: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)


@contextmanager
def scripted_server(routes: dict[str, Reply], default: Reply | None = None) -> Iterator[Scripted]:
    """A plain HTTP server on 127.0.0.1 answering ``routes`` by path (GET and HEAD)."""
    state = Scripted("", "", routes, default or Reply(404, b"not found"))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, with_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            state.seen.append(f"{self.command} {path}")
            reply = state.routes.get(path, state.default)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.stall:
                self.wfile.flush()
                state.stopping.wait(reply.stall)
            if with_body:
                self.wfile.write(reply.body)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that went away mid-answer is what some tests are about

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    state.url, state.host = f"http://127.0.0.1:{port}", f"127.0.0.1:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
