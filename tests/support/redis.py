"""Debian's ``redis-server`` on a free 127.0.0.1 port, for the descriptor cache's tests and benchmarks.

In a test (import the fixture in the tests directory's ``conftest.py``)::

    from tests.support.redis import redis_server  # noqa: F401

    def test_something(redis_server: RedisServer) -> None:
        redis_server.addr          # "127.0.0.1:PORT", for ServerConfig.redis_addr / serve --redis
        redis_server.stop()        # Redis gone (SIGKILL), as in an outage; redis_server.start() brings it back
                                   # on the same port, empty

outside pytest (benchmarks): ``with run_redis() as server: ...``. Nothing is persisted (``--save ''``,
``--appendonly no``) and a full Redis evicts least-recently-used keys (``--maxmemory-policy allkeys-lru``), as a
cache should be run.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import require_binary
from tests.support.distribution import free_port, stop_process

__all__ = ["RedisServer", "redis_server", "run_redis"]


class RedisServer:
    """One ``redis-server`` process: ``addr``, ``port``; ``stop()`` and ``start()`` for outage tests."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.addr = f"127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "allkeys-lru",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            stop_process(self.process)
            self.process = None

    def command(self, *args: str) -> str:
        """One command in RESP over a plain socket (tests inspect keys without the library under test)."""
        request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(request.encode())
            return sock.recv(65536).decode()

    def _answers(self) -> bool:
        try:
            return self.command("PING").startswith("+PONG")
        except OSError:
            return False


def find_binary() -> str | None:
    return shutil.which("redis-server")


@contextlib.contextmanager
def run_redis(binary: str | None = None) -> Iterator[RedisServer]:
    binary = binary or find_binary()
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    for attempt in range(3):
        server = RedisServer(binary, free_port())
        try:
            server.start()
        except RuntimeError:
            if attempt == 2:
                raise
            continue
        break
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with run_redis(require_binary("redis-server")) as server:
        yield server
