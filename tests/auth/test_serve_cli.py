"""``regtool serve`` as a subprocess with --htpasswd, --token-auth and --tls-cert/--tls-key, driven by the CLI."""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from regtool.server.auth.jwt import SigningKey
from tests.auth.conftest import USERS
from tests.cli.support import assert_user_error, regtool
from tests.support.images import write_image
from tests.support.pki import Pki
from tests.support.serve import free_port


def _answers(port: int, context: ssl.SSLContext) -> bool:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=1, context=context)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status == 401
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def serve_process(tmp_path: Path, pki: Pki, *args: str) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "regtool", "serve", "--root", str(tmp_path / "root"), "--port", str(port)]
    command += ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), *args]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    try:
        deadline = time.monotonic() + 15
        while not _answers(port, context):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {log.read_text()}")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert USERS["alice"] not in log.read_text()


@pytest.mark.parametrize("mode", ["htpasswd", "token"])
def test_serve_tls_with_auth_push_pull_through_the_cli(
    mode: str, tmp_path: Path, pki: Pki, htpasswd: Path, token_key: tuple[Path, Path, SigningKey]
) -> None:
    args = ["--htpasswd", str(htpasswd)]
    if mode == "token":
        args += ["--token-auth", "--token-key", str(token_key[0]), "--token-cert", str(token_key[1])]
    image = write_image(tmp_path / "src", "1.0", [{"a.txt": b"through the CLI"}])
    with serve_process(tmp_path, pki, *args) as host:
        common = ["--ca-cert", str(pki.ca_cert), "-u", "alice", "--password-stdin", "--quiet", "--json"]
        pushed = regtool(
            "push",
            f"{tmp_path / 'src'}:1.0",
            f"{host}/team/app:1.0",
            *common,
            cwd=tmp_path,
            stdin=USERS["alice"] + "\n",
        )
        assert pushed.returncode == 0, pushed.stderr
        assert json.loads(pushed.stdout)["digest"] == str(image.manifest.digest)
        pulled = regtool(
            "pull", f"{host}/team/app:1.0", str(tmp_path / "out"), *common, cwd=tmp_path, stdin=USERS["alice"] + "\n"
        )
        assert pulled.returncode == 0, pulled.stderr
        assert json.loads(pulled.stdout)["digest"] == str(image.manifest.digest)
        wrong = regtool(
            "tags",
            f"{host}/team/app",
            "--ca-cert",
            str(pki.ca_cert),
            "-u",
            "alice",
            "--password-stdin",
            cwd=tmp_path,
            stdin="bad-password\n",
        )
        assert_user_error(wrong, 4)
        assert "bad-password" not in wrong.stderr


def test_serve_refuses_unusable_auth_and_tls_files(tmp_path: Path, pki: Pki) -> None:
    bad = tmp_path / "htpasswd"
    bad.write_text("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
    done = regtool("serve", "--root", str(tmp_path / "r"), "--port", "0", "--htpasswd", str(bad), cwd=tmp_path)
    assert_user_error(done, 2, "is not bcrypt")
    assert "W6ph5" not in done.stderr
    done = regtool(
        "serve",
        "--root",
        str(tmp_path / "r"),
        "--port",
        "0",
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.client_key),
        cwd=tmp_path,
    )
    assert_user_error(done, 2, "cannot use TLS certificate")
    done = regtool(
        "serve", "--root", str(tmp_path / "r"), "--port", "0", "--tls-cert", str(pki.server_cert), cwd=tmp_path
    )
    assert_user_error(done, 2, "both a TLS certificate and its key")
