"""``regtool serve --config FILE`` as a user runs it: the file configures a real process, flags override it,
and a bad file is one line on stderr with exit 2."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from regtool import mediatypes as mt
from tests.server.helpers import digest_of, image_manifest, push_blob, push_manifest, random_blob
from tests.support.distribution import free_port, stop_process


@contextlib.contextmanager
def serve_with_config(
    config: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[tuple[str, Path]]:
    """``regtool serve --config CONFIG ARGS`` on a free port given with --port; or, with ``port``, on that port
    as the file (or its environment) sets it, no flag added."""
    command = [sys.executable, "-m", "regtool", "serve", "--config", str(config), *args]
    if port is None:
        port = free_port()
        command += ["--port", str(port)]
    log = config.parent / f"serve-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"serve did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", log
    finally:
        stop_process(process, timeout=10)


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(body)
    return path


def test_the_file_configures_storage_and_deletes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    config = _config(
        tmp_path,
        f"version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"
        "http:\n  addr: 127.0.0.1:5000\n  headers:\n    X-Content-Type-Options: [nosniff]\n",
    )
    with serve_with_config(config) as (url, log), httpx.Client(base_url=url) as client:
        blob = random_blob(4096)
        push_blob(client, "app", blob)
        # distribution's default for a configuration file: deletes are off.
        response = client.delete(f"/v2/app/blobs/{digest_of(blob)}")
        assert response.status_code == 405
        assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
        fetched = client.get(f"/v2/app/blobs/{digest_of(blob)}")
        assert fetched.content == blob
        # http.headers: on every response, the registry's errors too.
        assert fetched.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert any(root.rglob("data")), "the blob is under the file's rootdirectory"
    text = log.read_text()
    assert f"regtool serve: {config}: log.fields: not added to regtool's log lines" in text
    assert "http.headers" not in text


def test_environment_and_flags_override_the_file(tmp_path: Path) -> None:
    config = _config(tmp_path, f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'unused'}\n")
    env = {"REGISTRY_STORAGE": "inmemory", "REGISTRY_STORAGE_DELETE_ENABLED": "true"}
    with serve_with_config(config, "--read-only", env=env) as (url, _log), httpx.Client(base_url=url) as client:
        # --read-only (a flag) wins over the file; the environment made it an in-memory registry with deletes.
        response = client.post("/v2/app/blobs/uploads/")
        assert response.status_code == 405
        assert "read-only" in response.json()["errors"][0]["message"]
    assert not (tmp_path / "unused").exists()
    with serve_with_config(config, env=env) as (url, _log), httpx.Client(base_url=url) as client:
        layer = random_blob(64)
        push_blob(client, "app", layer)
        manifest = image_manifest(layer, [])
        assert push_manifest(client, "app", "v1", manifest, mt.OCI_MANIFEST).status_code == 201
        assert client.delete(f"/v2/app/manifests/{digest_of(manifest)}").status_code == 202


def test_a_bad_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = _config(tmp_path, "version: 0.1\nstorage:\n  azure:\n    accountname: a\n")
    result = subprocess.run(
        [sys.executable, "-m", "regtool", "serve", "--config", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {config}: storage.azure: not supported by regtool serve (its drivers: filesystem, inmemory, s3)\n"
    )
    assert result.stdout == ""
