"""``regtool serve`` as a user runs it: options, the start line, the access log, clean shutdown on signals."""

from __future__ import annotations

import os
import re
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
from tests.cli.support import assert_user_error
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


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regtool", "serve", *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_a_busy_port_is_a_clear_failure_that_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "data" / "root"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _serve("--root", str(root), "--port", str(port))
    # The port is checked first: no banner announcing a server that never ran, and no storage directory.
    assert_user_error(result, 1, f"cannot listen on 127.0.0.1:{port}", "Address already in use")
    assert not (tmp_path / "data").exists()


def test_port_zero_announces_the_port_it_got(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "regtool", "serve", "--storage", "inmemory", "--port", "0", "--quiet"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+) ", banner)
        assert match is not None, banner
        port = int(match.group(1))
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=10).status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=15)
    assert process.returncode == 0


_REFUSALS = {
    "root is a file": (["--root", "{file}"], ["storage root {file} exists and is not a directory"]),
    "root below a file": (["--root", "{file}/below"], ["cannot create storage root {file}/below", "Not a directory"]),
    "missing certificate": (
        ["--storage", "inmemory", "--tls-cert", "{missing}", "--tls-key", "{file}"],
        ["TLS certificate file {missing} not found"],
    ),
    "missing key": (
        ["--storage", "inmemory", "--tls-cert", "{file}", "--tls-key", "{missing}"],
        ["TLS key file {missing} not found"],
    ),
    "token auth without users": (
        ["--storage", "inmemory", "--token-auth"],
        ["token auth needs users (an htpasswd file)"],
    ),
    "root with inmemory": (["--storage", "inmemory", "--root", "{unused}"], ["--root is for filesystem storage"]),
}


@pytest.mark.parametrize("case", list(_REFUSALS))
def test_start_refusals_name_what_is_wrong(tmp_path: Path, case: str) -> None:
    a_file = tmp_path / "not-a-directory"
    a_file.write_text("x")
    names = {"file": str(a_file), "missing": str(tmp_path / "missing.pem"), "unused": str(tmp_path / "unused")}
    args, fragments = _REFUSALS[case]
    result = _serve(*(arg.format(**names) for arg in args), "--port", "0")
    assert_user_error(result, 2, *(fragment.format(**names) for fragment in fragments))
    assert sorted(tmp_path.iterdir()) == [a_file]


def test_token_auth_for_anonymous_pulls_needs_no_users() -> None:
    process, url = _start(["--storage", "inmemory", "--token-auth", "--anonymous-pull", "--quiet"], dict(os.environ))
    try:
        assert httpx.get(f"{url}/v2/").status_code == 401
    finally:
        process.terminate()
        process.communicate(timeout=15)
