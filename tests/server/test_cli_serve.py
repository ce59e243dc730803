"""``regtool serve`` as a user runs it: options, the start line, the access log, clean shutdown on signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from regtool.cli import app
from tests.support.serve import free_port, run_serve_process


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "regtool", "serve", "--port", str(port), *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v2/", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    process.communicate()
    raise AssertionError("regtool serve did not start")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_default_root_start_line_access_log_and_clean_shutdown(tmp_path: Path, sig: signal.Signals) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    process, url = _start([], env)
    httpx.get(f"{url}/v2/nope/tags/list")
    process.send_signal(sig)
    _, err = process.communicate(timeout=15)
    text = err.decode()
    assert process.returncode == 0, text
    root = tmp_path / "data" / "regtool" / "registry"
    assert f"root {root}" in text
    assert url in text
    assert '"GET /v2/nope/tags/list" 404' in text
    assert "stopped" in text
    assert root.is_dir()


def test_flags_reach_the_server(tmp_path: Path) -> None:
    with run_serve_process(tmp_path / "root", "--no-v2", "--quiet") as server:
        response = httpx.get(f"{server.url}/v2/")
        assert response.status_code == 404
        assert "docker-distribution-api-version" not in response.headers
    with run_serve_process(tmp_path / "root", "--read-only", "--latency", "50") as server:
        started = time.monotonic()
        assert httpx.post(f"{server.url}/v2/r/blobs/uploads/").status_code == 405
        assert time.monotonic() - started >= 0.05
    with run_serve_process(tmp_path / "root", "--no-v1", "--max-manifest-size", "10", "--quiet") as server:
        assert httpx.get(f"{server.url}/v1/_ping").status_code == 404
        too_big = httpx.put(f"{server.url}/v2/r/manifests/t", content=b'{"schemaVersion": 2}')
        assert too_big.status_code == 413
        assert too_big.json()["errors"][0]["code"] == "SIZE_INVALID"


def test_inmemory_storage_needs_no_root(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    process, url = _start(["--storage", "inmemory", "--quiet"], env)
    assert httpx.post(f"{url}/v2/r/blobs/uploads/").status_code == 202
    process.terminate()
    _, err = process.communicate(timeout=15)
    assert "in memory" in err.decode()
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "args",
    [["--storage", "s3"], ["--no-v1", "--no-v2"], ["--port", "70000"], ["--max-manifest-size", "0"]],
)
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--root", "--storage", "--read-only", "--max-manifest-size", "--latency"):
        assert option in result.output


def test_a_busy_port_is_a_clear_failure(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "regtool", "serve", "--storage", "inmemory", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
