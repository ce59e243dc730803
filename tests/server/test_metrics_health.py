"""/metrics (Prometheus text, by route template and status) and /debug/health (storage reachable) on a real serve."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from regtool.server.app import create_app
from regtool.server.config import ServerConfig
from tests.auth.support import write_htpasswd
from tests.server.helpers import digest_of, push_blob, random_blob
from tests.support.redis import RedisServer
from tests.support.serve import free_port, run_serve, run_serve_process

BLOB_ROUTE = "/v2/{name:path}/blobs/{digest}"
UPLOAD_ROUTE = "/v2/{name:path}/blobs/uploads/{uuid}"


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_bytes_and_durations_by_route_template_and_status(tmp_path: Path) -> None:
    blob = random_blob(100_000)
    with run_serve(tmp_path / "registry") as server, httpx.Client(base_url=server.url) as client:
        digest = push_blob(client, "secret-team/app", blob)
        assert client.head(f"/v2/secret-team/app/blobs/{digest}").status_code == 200
        assert client.get(f"/v2/secret-team/app/blobs/{digest}").content == blob
        assert client.get("/v2/secret-team/app/blobs/" + digest_of(b"absent")).status_code == 404
        assert client.get("/no/such/path").status_code == 404
        samples = scrape(client)
        text = client.get("/metrics").text

    requests = "registry_http_requests_total"
    assert sample(samples, requests, method="HEAD", route=BLOB_ROUTE, status="200") == 1
    assert sample(samples, requests, method="GET", route=BLOB_ROUTE, status="200") == 1
    assert sample(samples, requests, method="GET", route=BLOB_ROUTE, status="404") == 1
    assert sample(samples, requests, method="PUT", route=UPLOAD_ROUTE, status="201") == 1
    assert sample(samples, requests, method="GET", route="(unmatched)", status="404") == 1
    assert sample(samples, "registry_http_response_bytes_total", method="GET", route=BLOB_ROUTE, status="200") == len(
        blob
    )
    assert sample(samples, "registry_http_request_bytes_total", method="PUT", route=UPLOAD_ROUTE, status="201") == len(
        blob
    )
    count = sample(
        samples, "registry_http_request_duration_seconds_count", method="GET", route=BLOB_ROUTE, status="200"
    )
    assert count == 1
    assert sample(samples, "registry_uploads_in_flight") == 0
    # Templates only: no series per repository or digest.
    assert "secret-team" not in text and digest not in text


def test_uploads_in_flight_counts_requests_still_sending(tmp_path: Path) -> None:
    release = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b"x" * 1000
        release.wait(10)
        yield b"y" * 1000

    with run_serve(tmp_path / "registry") as server, httpx.Client(base_url=server.url, timeout=30) as client:
        location = client.post("/v2/app/blobs/uploads/").headers["location"]
        results: list[int] = []
        sender = threading.Thread(
            target=lambda: results.append(client.patch(location, content=slow_body()).status_code)
        )
        sender.start()
        try:
            deadline = time.monotonic() + 10
            while sample(scrape(client), "registry_uploads_in_flight") != 1:
                assert time.monotonic() < deadline, "the PATCH never showed as in flight"
                time.sleep(0.05)
        finally:
            release.set()
            sender.join(10)
        assert results == [202]
        assert sample(scrape(client), "registry_uploads_in_flight") == 0


@pytest.mark.interop
def test_cache_hits_and_misses_are_counted(tmp_path: Path, redis_server: RedisServer) -> None:
    with (
        run_serve(tmp_path / "registry", redis_addr=redis_server.addr) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        digest = push_blob(client, "app", b"cached")
        for _ in range(3):
            assert client.head(f"/v2/app/blobs/{digest}").status_code == 200
        assert client.head("/v2/app/blobs/" + digest_of(b"absent")).status_code == 404
        samples = scrape(client)
    assert sample(samples, "registry_cache_requests_total", result="hit") == 3
    assert sample(samples, "registry_cache_requests_total", result="miss") >= 1  # the absent blob
    assert sample(samples, "registry_cache_requests_total", result="error") == 0
    assert sample(samples, "registry_cache_up") == 1


@pytest.mark.interop
def test_a_cache_standing_aside_shows(tmp_path: Path, redis_server: RedisServer) -> None:
    with (
        run_serve(tmp_path / "registry", redis_addr=redis_server.addr) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        digest = push_blob(client, "app", b"cached")
        redis_server.stop()
        assert client.head(f"/v2/app/blobs/{digest}").status_code == 200
        samples = scrape(client)
    assert sample(samples, "registry_cache_up") == 0
    assert sample(samples, "registry_cache_requests_total", result="error") >= 1


def test_metrics_are_for_loopback_peers_and_can_be_turned_off(tmp_path: Path) -> None:
    # Only 127.0.0.1 is reachable here, so the off-loopback peer is the ASGI scope's client address.
    app = create_app(ServerConfig(root=tmp_path / "a", access_log=False))

    async def from_elsewhere() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as remote:
            assert (await remote.get("/v2/")).status_code == 200
            return await remote.get("/metrics")

    refused = anyio.run(from_elsewhere)
    assert refused.status_code == 404
    assert refused.json()["errors"][0]["code"] == "UNSUPPORTED"
    with run_serve(tmp_path / "b", metrics=False) as server:
        off = httpx.get(f"{server.url}/metrics")
    assert off.status_code == 404
    assert off.json()["errors"][0]["code"] == "UNSUPPORTED"


def test_health_needs_no_credentials_and_reports_storage(tmp_path: Path) -> None:
    real = tmp_path / "storage"
    real.mkdir()
    root = tmp_path / "root"
    root.symlink_to(real)
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "secret"})
    overrides = {"health_storage_interval": 0.001, "health_storage_threshold": 2, "htpasswd": htpasswd}
    with run_serve(root, **overrides) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/").status_code == 401
        healthy = client.get("/debug/health")
        assert (healthy.status_code, healthy.json()) == (200, {})

        # The storage root becomes a symlink loop: every stat fails with ELOOP, a real file-system error.
        os.remove(root)
        os.symlink(root, root)
        time.sleep(0.01)
        assert client.get("/debug/health").status_code == 200  # one failure is below the threshold
        time.sleep(0.01)
        unhealthy = client.get("/debug/health")
        assert unhealthy.status_code == 503
        assert list(unhealthy.json()) == ["storagedriver_filesystem"]
        assert "Too many levels of symbolic links" in unhealthy.json()["storagedriver_filesystem"]

        os.remove(root)
        root.symlink_to(real)
        time.sleep(0.01)
        recovered = client.get("/debug/health")
        assert (recovered.status_code, recovered.json()) == (200, {})


def test_health_checks_storage_at_most_once_per_interval(tmp_path: Path) -> None:
    from regtool.server.health import StorageHealth
    from regtool.server.storage.filesystem import FilesystemDriver

    now = [0.0]
    root = tmp_path / "root"
    root.mkdir()
    health = StorageHealth(FilesystemDriver(root), "filesystem", interval=10, threshold=1, clock=lambda: now[0])
    assert health.status() == {}
    root.rename(tmp_path / "away")
    root.symlink_to(root)
    now[0] = 9.9
    assert health.status() == {}  # the last result is still fresh: the store is not asked
    now[0] = 10.0
    assert list(health.status()) == ["storagedriver_filesystem"]


def test_a_debug_address_takes_metrics_off_the_main_port(tmp_path: Path) -> None:
    debug_port = free_port()
    with run_serve_process(tmp_path / "root", "--debug-addr", f"127.0.0.1:{debug_port}", "--quiet") as server:
        debug = f"http://127.0.0.1:{debug_port}"
        assert httpx.get(f"{server.url}/v2/").status_code == 200
        main = httpx.get(f"{server.url}/metrics")
        assert (main.status_code, main.json()["errors"][0]["code"]) == (404, "UNSUPPORTED")
        with httpx.Client(base_url=debug) as client:
            samples = scrape(client)
            assert client.get("/debug/health").json() == {}
        assert sample(samples, "registry_http_requests_total", method="GET", route="/v2/", status="200") >= 1
        assert sample(samples, "registry_http_requests_total", method="GET", route="/metrics", status="404") == 1


def test_a_busy_debug_address_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        done = subprocess.run(
            [sys.executable, "-m", "regtool", "serve", "--root", str(tmp_path), "--port", "0", "--debug-addr", address],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: cannot listen on {address} (the debug address): Address already in use"
    ]
