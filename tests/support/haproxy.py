"""Debian's ``haproxy`` in front of several registry instances: round robin, no stickiness, health-checked.

::

    with run_haproxy(tmp_path / "lb", [("127.0.0.1", 5001), ("127.0.0.1", 5002)]) as balancer:
        balancer.url, balancer.host          # http://127.0.0.1:PORT, 127.0.0.1:PORT
        balancer.wait_until_up(2)             # both instances pass the health check

The configuration is generated per run with a free frontend port (``port=`` picks one in advance, for a token
realm that must name the balancer before it starts). Every request is balanced on its own (HTTP mode keeps no
affinity), so the requests of one push land on every instance. Each instance is checked with
``GET /debug/health`` every 500 ms and taken out after one failure (``fall 1``); ``option redispatch`` and
``retries`` send a request whose connection was refused to another instance; ``option splice-auto`` lets the
kernel move blob bodies between the sockets (serve sends them with sendfile; without splicing haproxy copied
each byte through user space and halved loopback pull speed, see BENCHMARKS.md). A request already being answered by
an instance that dies is lost (502 or a cut body): the client's retries must cover that.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.distribution import free_port, http_status, stop_process

__all__ = ["Balancer", "find_binary", "haproxy_config", "run_haproxy"]


def haproxy_config(port: int, backends: Sequence[tuple[str, int]], stats_socket: Path) -> str:
    servers = "\n".join(
        f"    server i{n} {host}:{backend_port} check inter 500 fall 1 rise 1"
        for n, (host, backend_port) in enumerate(backends)
    )
    return f"""\
global
    maxconn 4096
    stats socket {stats_socket} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-request 30s
    retries 3
    option redispatch
    option splice-auto

frontend registry
    bind 127.0.0.1:{port}
    default_backend instances

backend instances
    balance roundrobin
    option httpchk GET /debug/health
    http-check expect status 200
{servers}
"""


@dataclass
class Balancer:
    url: str
    host: str
    port: int
    config_path: Path
    stats_socket: Path
    process: subprocess.Popen[bytes]

    def servers_up(self) -> int:
        """How many instances haproxy considers up now (from its stats socket)."""
        return sum(1 for row in self._servers() if row["status"] == "UP")

    def sessions(self, n: int) -> int:
        """The requests haproxy has at backend ``n`` now (its current sessions there)."""
        return sum(int(row["scur"] or 0) for row in self._servers() if row["svname"] == f"i{n}")

    def _servers(self) -> list[dict[str, str]]:
        """``show stat``'s rows of the backend's servers."""
        import socket

        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return [row for row in rows if row["svname"] not in ("FRONTEND", "BACKEND")]

    def wait_until_up(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.servers_up() != count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"haproxy sees {self.servers_up()} instances up, not {count}")
            time.sleep(0.1)


def find_binary() -> str | None:
    return shutil.which("haproxy")


@contextlib.contextmanager
def run_haproxy(
    workdir: Path,
    backends: Sequence[tuple[str, int]],
    *,
    port: int | None = None,
    binary: str | None = None,
) -> Iterator[Balancer]:
    """haproxy balancing over ``backends``; returns once every backend is up behind it. Stopped on exit."""
    binary = binary or find_binary()
    if binary is None:
        raise RuntimeError("haproxy is not installed (apt-get install haproxy)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config_path = workdir / "haproxy.cfg"
    # A short path: a unix socket's path is limited to about 100 bytes, and test directories run long.
    socket_dir = Path(tempfile.mkdtemp(prefix="haproxy-"))
    stats_socket = socket_dir / "stats.sock"
    config_path.write_text(haproxy_config(port, backends, stats_socket))
    with open(workdir / "haproxy.log", "ab") as log:
        process = subprocess.Popen(
            [binary, "-f", str(config_path), "-db"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    balancer = Balancer(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", port, config_path, stats_socket, process)
    try:
        deadline = time.monotonic() + 15
        while not (stats_socket.exists() and http_status(port, "/debug/health", timeout=2) == 200):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start; see {workdir / 'haproxy.log'}")
            time.sleep(0.05)
        balancer.wait_until_up(len(backends))
        yield balancer
    finally:
        stop_process(process)
        shutil.rmtree(socket_dir, ignore_errors=True)
