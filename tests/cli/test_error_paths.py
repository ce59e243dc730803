"""Failures a real registry will not produce on demand, through the CLI: a tampered blob (integrity, 5), a
registry that refuses every request (auth, 4), a web server that is no registry (7), nothing listening (6).

Each ends in one ``error:`` line on stderr, the documented exit code and no traceback."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

from regtool import mediatypes as mt
from tests.cli.support import Reply, assert_user_error, regtool, scripted_server, start_regtool
from tests.support.images import image_manifest

V2_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_tampered_blob_is_an_integrity_error_and_leaves_nothing(tmp_path: Path) -> None:
    image = image_manifest([{"a.txt": b"original content\n" * 50}])
    (layer,) = image.layers
    tampered = bytes([layer[0] ^ 0xFF]) + layer[1:]
    routes = {
        "/v2/": Reply(200, b"{}", {**V2_HEADERS, "Content-Type": "application/json"}),
        "/v2/team/app/manifests/1.0": Reply(
            200,
            image.manifest.raw,
            {**V2_HEADERS, "Content-Type": mt.OCI_MANIFEST, "Docker-Content-Digest": str(image.manifest.digest)},
        ),
        f"/v2/team/app/blobs/{image.config_digest}": Reply(200, image.config, V2_HEADERS),
        f"/v2/team/app/blobs/{image.layer_digests[0]}": Reply(200, tampered, V2_HEADERS),
    }
    with scripted_server(routes, Reply(404, b"", V2_HEADERS)) as server:
        proc = regtool("pull", f"{server.host}/team/app:1.0", "out", "--protocol", "v2", "-q", cwd=tmp_path)
    line = assert_user_error(proc, 5, image.layer_digests[0].encoded[:12])
    assert server.host in line
    assert proc.stdout == ""
    blob = tmp_path / "out" / "blobs" / "sha256" / image.layer_digests[0].encoded
    assert not blob.exists()


def test_tampered_blob_under_json_is_a_json_error_event(tmp_path: Path) -> None:
    image = image_manifest([{"a.txt": b"x" * 1000}])
    routes = {
        "/v2/": Reply(200, b"{}", V2_HEADERS),
        "/v2/team/app/manifests/1.0": Reply(200, image.manifest.raw, {**V2_HEADERS, "Content-Type": mt.OCI_MANIFEST}),
        f"/v2/team/app/blobs/{image.config_digest}": Reply(200, image.config, V2_HEADERS),
        f"/v2/team/app/blobs/{image.layer_digests[0]}": Reply(200, b"\0" * len(image.layers[0]), V2_HEADERS),
    }
    with scripted_server(routes, Reply(404, b"", V2_HEADERS)) as server:
        proc = regtool("pull", f"{server.host}/team/app:1.0", "out", "--protocol", "v2", "--json", cwd=tmp_path)
    assert proc.returncode == 5, proc.stderr
    assert "Traceback" not in proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines()]  # every stderr line is JSON
    assert events[-1]["event"] == "error"
    assert events[-1]["exit_code"] == 5
    assert proc.stdout == ""


def test_registry_refusing_credentials_is_an_auth_error(tmp_path: Path) -> None:
    denied = Reply(
        401,
        b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
        {**V2_HEADERS, "WWW-Authenticate": 'Basic realm="test"', "Content-Type": "application/json"},
    )
    with scripted_server({}, denied) as server:
        proc = regtool(
            "tags",
            f"{server.host}/team/app",
            "-u",
            "alice",
            "--password-stdin",
            stdin="wrong-password\n",
            cwd=tmp_path,
        )
    line = assert_user_error(proc, 4)
    assert "wrong-password" not in line
    assert proc.stdout == ""


def test_web_server_that_is_no_registry(tmp_path: Path) -> None:
    with scripted_server({"/": Reply(200, b"<html>hello</html>", {"Content-Type": "text/html"})}) as server:
        probe = regtool("probe", server.host, cwd=tmp_path)
        pull = regtool("pull", f"{server.host}/team/app:1.0", "out", cwd=tmp_path)
    assert probe.returncode == 7
    assert "neither" in probe.stdout
    assert "Traceback" not in probe.stderr
    assert probe.stderr.startswith("error: no registry API")
    assert_user_error(pull, 7)
    assert not (tmp_path / "out").exists()


def test_nothing_listening(tmp_path: Path) -> None:
    host = f"127.0.0.1:{_refused_port()}"
    probe = regtool("probe", host, "--json", cwd=tmp_path)
    assert probe.returncode == 7
    assert json.loads(probe.stdout)["verdict"] == "neither"
    assert json.loads(probe.stderr)["event"] == "error"
    tags = regtool("tags", f"{host}/team/app", cwd=tmp_path)
    assert_user_error(tags, 6, host)
    # pull and push probe first: a refused connection is still a network error (6), not "no registry" (7).
    pull = regtool("pull", f"{host}/team/app:1.0", "out", "-q", cwd=tmp_path)
    assert_user_error(pull, 6, host)
    assert not (tmp_path / "out").exists()


def test_server_error_on_v2_is_not_a_quiet_fallback_to_v1(tmp_path: Path) -> None:
    routes = {
        "/v2/": Reply(503, b"upstream down", {"Content-Type": "text/plain"}),
        "/v1/_ping": Reply(200, b"{}", {"X-Docker-Registry-Version": "0.9.1", "Content-Type": "application/json"}),
    }
    with scripted_server(routes, Reply(404, b"", {})) as server:
        proc = regtool("pull", f"{server.host}/team/app:1.0", "out", "-q", cwd=tmp_path)
        requested = list(server.seen)
    line = assert_user_error(proc, 1, "HTTP 503")
    assert server.host in line
    assert not [p for p in requested if "/v1/repositories" in p]
    assert not (tmp_path / "out").exists()


def test_interrupt_exits_130_without_a_traceback(tmp_path: Path) -> None:
    image = image_manifest([{"a.txt": b"y" * 5000}])
    routes = {
        "/v2/": Reply(200, b"{}", V2_HEADERS),
        "/v2/team/app/manifests/1.0": Reply(200, image.manifest.raw, {**V2_HEADERS, "Content-Type": mt.OCI_MANIFEST}),
        f"/v2/team/app/blobs/{image.config_digest}": Reply(200, image.config, V2_HEADERS),
        # The layer's body stalls: Ctrl-C arrives mid-download. (A read blocked in a worker thread ends when data
        # comes or the read times out, so the stall is short.)
        f"/v2/team/app/blobs/{image.layer_digests[0]}": Reply(200, image.layers[0], V2_HEADERS, stall=3),
    }
    with scripted_server(routes, Reply(404, b"", V2_HEADERS)) as server:
        proc = start_regtool("pull", f"{server.host}/team/app:1.0", "out", "--protocol", "v2", cwd=tmp_path)
        try:
            deadline = time.monotonic() + 30
            while f"GET /v2/team/app/blobs/{image.layer_digests[0]}" not in server.seen:
                assert time.monotonic() < deadline, server.seen
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=20)
        finally:
            proc.kill()
            proc.wait()
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted")
    assert stdout == ""


def test_verbose_shows_retries(tmp_path: Path) -> None:
    routes = {
        "/v2/": Reply(200, b"{}", V2_HEADERS),
        "/v2/team/app/manifests/1.0": Reply(503, b"busy", {**V2_HEADERS, "Retry-After": "0"}),
    }
    with scripted_server(routes, Reply(404, b"", V2_HEADERS)) as server:
        proc = regtool(
            "pull", f"{server.host}/team/app:1.0", "out", "--protocol", "v2", "--plain-http", "--retries", "1", "-v",
            cwd=tmp_path,
        )  # fmt: skip
        asked = server.seen.count("GET /v2/team/app/manifests/1.0")
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert asked == 2
    lines = proc.stderr.strip().splitlines()
    assert any("retry 1 of" in line for line in lines), proc.stderr
    assert any("HTTP Request: GET" in line for line in lines), proc.stderr
    assert lines[-1].startswith("error: ") and "503" in lines[-1]
    assert proc.stdout == ""
