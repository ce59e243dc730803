"""App-wide behaviour: the version header everywhere, error envelopes, paging, read-only, disabled APIs, observer."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from regtool.errors import UsageError
from regtool.server.config import ServerConfig
from tests.server.helpers import image_manifest, push_blob, push_manifest
from tests.support.serve import RequestLog, RunningServe, run_serve


def test_version_header_on_every_response(client: httpx.Client) -> None:
    for method, path in [
        ("GET", "/v2/"),
        ("GET", "/v2/nope/manifests/latest"),
        ("GET", "/nowhere"),
        ("POST", "/v2/"),
        ("GET", "/v2/BAD/tags/list"),
        ("GET", "/v1/_ping"),
    ]:
        response = client.request(method, path)
        assert response.headers["docker-distribution-api-version"] == "registry/2.0", path
    for path in ("/v2/", "/v2"):
        base = client.get(path)
        assert base.status_code == 200 and base.json() == {}
        assert client.head(path).status_code == 200


def test_unknown_paths_and_methods_use_the_envelope(client: httpx.Client) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
    response = client.post("/v2/r/blobs/sha256:" + "a" * 64)
    assert response.status_code == 405
    assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert "DELETE" in response.headers["allow"]


def test_catalog_and_tag_paging(client: httpx.Client) -> None:
    push_blob(client, "x", b"{}")
    names = ["a/b", "a/b/c", "x", "z-z/y.y"]
    for name in names:
        push_blob(client, name, b"{}")
        for tag in ("t1", "t2", "t3"):
            assert push_manifest(client, name, tag, image_manifest(b"{}", []), mt.OCI_MANIFEST).status_code == 201
    assert client.get("/v2/_catalog").json() == {"repositories": names}
    page = client.get("/v2/_catalog", params={"n": 2})
    assert page.json() == {"repositories": ["a/b", "a/b/c"]}
    assert page.headers["link"] == '</v2/_catalog?n=2&last=a%2Fb%2Fc>; rel="next"'
    page = client.get("/v2/_catalog", params={"n": 2, "last": "a/b/c"})
    assert page.json() == {"repositories": ["x", "z-z/y.y"]}
    assert "link" not in page.headers
    empty = client.get("/v2/a/b/tags/list", params={"n": 0})
    assert empty.json() == {"name": "a/b", "tags": []} and "link" not in empty.headers
    assert client.get("/v2/a/b/tags/list", params={"last": "t1"}).json()["tags"] == ["t2", "t3"]
    # "²" passes str.isdigit but not int(), and int() refuses 4300 digits: neither may reach it (a 500).
    for bad in ("-1", "abc", "1e3", "99999999", "²", "٣", "1" * 5000):
        for path in ("/v2/a/b/tags/list", "/v2/_catalog"):
            response = client.get(path, params={"n": bad})
            assert response.status_code == 400
            assert response.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"
        assert client.get("/v2/_catalog", params={"n": bad}).status_code == 400


def test_read_only_refuses_writes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with run_serve(root) as server, httpx.Client(base_url=server.url) as client:
        digest = push_blob(client, "r", b"{}")
        assert push_manifest(client, "r", "t", image_manifest(b"{}", []), mt.OCI_MANIFEST).status_code == 201
    with run_serve(root, read_only=True) as server, httpx.Client(base_url=server.url) as client:
        assert client.get(f"/v2/r/blobs/{digest}").content == b"{}"
        assert client.get("/v2/r/manifests/t").status_code == 200
        for response in (
            client.post("/v2/r/blobs/uploads/"),
            client.put("/v2/r/manifests/t2", content=image_manifest(b"{}", [])),
            client.delete("/v2/r/manifests/t"),
            client.delete(f"/v2/r/blobs/{digest}"),
        ):
            assert response.status_code == 405
            assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert client.get("/v2/r/manifests/t").status_code == 200


def test_disabled_v2_answers_404_without_the_header() -> None:
    with run_serve(enable_v2=False) as server:
        response = httpx.get(f"{server.url}/v2/")
        assert response.status_code == 404
        assert "docker-distribution-api-version" not in response.headers


def test_observer_sees_every_request_with_times_and_bytes() -> None:
    seen: list[str] = []
    with run_serve(latency_ms=30, observer=lambda event: seen.append(event.path)) as server:
        with httpx.Client(base_url=server.url) as client:
            started = time.monotonic()
            digest = push_blob(client, "r", b"0123456789")
            client.get(f"/v2/r/blobs/{digest}")
            elapsed = time.monotonic() - started
        events = server.requests.events()
    assert [e.method for e in events] == ["POST", "PUT", "GET"]
    assert seen == [e.path for e in events]
    put, get = events[1], events[2]
    assert put.received == 10 and put.status == 201 and put.query.startswith("digest=")
    assert get.sent == 10 and get.status == 200
    assert all(e.duration >= 0.03 for e in events)
    assert elapsed >= 0.09
    assert RequestLog.max_overlap(events) == 1


def test_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        ServerConfig(storage="filesystem", root=None)
    with pytest.raises(UsageError):
        ServerConfig(root=tmp_path, max_manifest_bytes=0)
    with pytest.raises(UsageError):
        ServerConfig(storage="s3", root=tmp_path)  # type: ignore[arg-type]


def test_a_bug_is_a_500_envelope_and_the_server_keeps_serving(server: RunningServe, client: httpx.Client) -> None:
    registry = server.app.state.context.registry

    def broken(name: str) -> list[str]:
        raise RuntimeError("simulated bug")

    registry.tags = broken
    response = client.get("/v2/r/tags/list")
    assert response.status_code == 500
    assert response.json()["errors"][0]["code"] == "UNKNOWN"
    assert "simulated" not in response.text
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    assert client.get("/v2/").status_code == 200
