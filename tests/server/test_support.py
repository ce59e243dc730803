"""The test helper other suites rely on (tests/support/serve.py) and the store's hooks for the v1 image store."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx

from regtool.digest import Digest, DigestVerifier
from regtool.server.storage.filesystem import FilesystemDriver
from regtool.server.storage.registry import Registry
from tests.support.serve import RequestLog, RunningServe, run_serve, run_serve_process


def test_serve_fixture_shape(serve: RunningServe, tmp_path: Path) -> None:
    assert serve.url == f"http://127.0.0.1:{serve.port}"
    assert serve.host == f"127.0.0.1:{serve.port}"
    assert serve.root == tmp_path / "registry"
    assert httpx.get(f"{serve.url}/v2/").status_code == 200
    assert [(e.method, e.path, e.status) for e in serve.requests.events()] == [("GET", "/v2/", 200)]
    serve.requests.clear()
    assert serve.requests.events() == []


def test_request_log_measures_overlap() -> None:
    with run_serve(latency_ms=200) as server:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda _: httpx.get(f"{server.url}/v2/"), range(3)))
        httpx.get(f"{server.url}/v2/")
        events = server.requests.events(method="GET", path_contains="/v2/")
    assert len(events) == 4
    assert RequestLog.max_overlap(events[:3]) == 3
    assert RequestLog.max_overlap(events[2:]) == 1


def test_serve_process_runs_the_cli(tmp_path: Path) -> None:
    with run_serve_process(tmp_path / "root", "--quiet") as proc:
        assert httpx.get(f"{proc.url}/v2/").headers["docker-distribution-api-version"] == "registry/2.0"
        assert proc.root == tmp_path / "root"
        proc.kill()
        assert proc.process.returncode == -9


def test_blob_store_temp_writer_and_ingest(tmp_path: Path) -> None:
    registry = Registry(FilesystemDriver(tmp_path / "root"))
    path, writer = registry.blobs.temp_writer()
    verifier = DigestVerifier()
    for chunk in (b"layer ", b"bytes"):
        writer.write(chunk)
        verifier.update(chunk)
    writer.commit()
    digest = verifier.digest()
    assert registry.blobs.size(digest) is None
    registry.blobs.ingest(path, digest)
    registry.blobs.discard(path)
    assert registry.blobs.get(digest) == b"layer bytes"
    registry.link_blob("v1/repo", digest)
    assert registry.stat_blob("v1/repo", digest) == 11
    other, writer = registry.blobs.temp_writer()
    writer.write(b"abandoned")
    writer.close()
    registry.blobs.discard(other)
    assert list((tmp_path / "root" / "uploads").iterdir()) == []
    assert registry.blobs.size(Digest.of(b"abandoned")) is None
    assert registry.repositories() == ["v1/repo"]
