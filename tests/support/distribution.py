"""Debian's ``docker-registry`` (distribution 2.8.2) on a free 127.0.0.1 port, for interop tests and benchmarks.

Usage in a test::

    from tests.support.distribution import distribution  # noqa: F401  (the pytest fixture)

    @pytest.mark.interop
    def test_something(distribution: Distribution) -> None:
        ...  # distribution.url == "http://127.0.0.1:PORT", distribution.host == "127.0.0.1:PORT"

or, outside pytest (benchmarks)::

    with run_distribution(Path("/tmp/reg")) as registry:
        ...

The registry stores blobs under ``root/storage`` (filesystem driver), has ``delete: enabled: true``, no auth,
and logs to ``root/registry.log``. Startup waits until ``GET /v2/`` answers.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Distribution", "distribution", "find_binary", "free_port", "run_distribution", "stop_process"]

_CONFIG = """\
version: 0.1
log:
  level: {level}
  accesslog:
    disabled: {no_access_log}
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: regtool-tests
"""


@dataclass(frozen=True)
class Distribution:
    """A running docker-registry: ``url`` (http://127.0.0.1:PORT), ``host`` (127.0.0.1:PORT), ``root``."""

    url: str
    host: str
    port: int
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def log_path(self) -> Path:
        return self.root / "registry.log"


def find_binary() -> str | None:
    """The docker-registry binary, or None."""
    return shutil.which("docker-registry") or (
        "/usr/bin/docker-registry" if os.path.exists("/usr/bin/docker-registry") else None
    )


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (for subprocesses, which cannot inherit our socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(port: int, path: str = "/v2/", *, timeout: float = 1.0) -> int | None:
    """The status of ``GET path`` on a loopback port, or None while nothing answers there (a readiness probe)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def _answers(port: int) -> bool:
    return http_status(port) == 200


@contextlib.contextmanager
def run_distribution(
    root: Path, *, binary: str | None = None, quiet: bool = True, extra_config: str = ""
) -> Iterator[Distribution]:
    """Start docker-registry with its data under ``root``; stop it on exit. ``extra_config`` is YAML appended to
    the configuration (top-level sections, e.g. ``proxy:`` to make it a pull-through cache)."""
    binary = binary or find_binary()
    if binary is None:
        raise FileNotFoundError("docker-registry is not installed (apt-get install docker-registry)")
    root.mkdir(parents=True, exist_ok=True)
    (root / "storage").mkdir(exist_ok=True)
    for _attempt in range(3):
        port = free_port()
        config = root / "config.yml"
        config.write_text(
            _CONFIG.format(
                level="warn" if quiet else "info",
                no_access_log="true" if quiet else "false",
                storage=root / "storage",
                port=port,
            )
            + extra_config
        )
        with open(root / "registry.log", "ab") as log:
            process = subprocess.Popen(
                [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None and not _answers(port):
            time.sleep(0.02)
        if process.poll() is None and _answers(port):
            break
        stop_process(process)
    else:
        raise RuntimeError(f"docker-registry did not start; see {root / 'registry.log'}")
    try:
        yield Distribution(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", port, root, process)
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[Distribution]:
    """A fresh docker-registry for one test (skipped outside CI when the binary is missing)."""
    from tests.conftest import require_binary

    binary = require_binary("docker-registry")
    with run_distribution(tmp_path / "distribution", binary=binary) as registry:
        yield registry
