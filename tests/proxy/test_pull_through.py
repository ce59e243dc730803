"""Pulls through the cache from a real upstream regtool serve: bytes, revalidation, staleness, refusals."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import NotFoundError
from tests.proxy.conftest import LAYERS, Mirror, cached_blob, cached_bytes, mirror_of, pull, push_image
from tests.support.serve import run_serve

ACCEPT = {"Accept": mt.MANIFEST_ACCEPT}


def _blob_bytes(layout: Path, digest: Digest) -> bytes:
    return (layout / "blobs" / digest.algorithm / digest.encoded).read_bytes()


def test_a_pull_through_the_cache_gets_the_upstream_image_and_caches_it(mirror: Mirror, tmp_path: Path) -> None:
    result = pull(f"{mirror.cache.host}/team/app:1.0", tmp_path / "pulled")

    assert result.digest == mirror.image.manifest.digest
    for digest, data in mirror.image.blobs.items():
        assert _blob_bytes(tmp_path / "pulled", digest) == data
        assert cached_bytes(mirror.cache, digest) == data
    assert cached_bytes(mirror.cache, mirror.image.manifest.digest) == mirror.image.manifest.raw
    # Each blob came from upstream once; a second pull takes nothing but the tag's HEAD from upstream.
    for digest in mirror.image.blobs:
        assert len(mirror.upstream.requests.events("GET", f"/blobs/{digest}")) == 1
    mirror.upstream.requests.clear()
    second = pull(f"{mirror.cache.host}/team/app:1.0", tmp_path / "again")
    assert second.digest == mirror.image.manifest.digest
    upstream_calls = [(e.method, e.path) for e in mirror.upstream.requests.events() if e.path != "/v2/"]
    assert upstream_calls == [("HEAD", "/v2/team/app/manifests/1.0")]


def test_a_tag_is_revalidated_upstream_on_every_request(mirror: Mirror, tmp_path: Path) -> None:
    first = httpx.get(f"{mirror.cache.url}/v2/team/app/manifests/1.0", headers=ACCEPT)
    assert first.headers["Docker-Content-Digest"] == str(mirror.image.manifest.digest)
    moved = push_image(mirror.upstream.host, tmp_path, "team/app", "1.0", [{"new.txt": b"moved on"}])

    second = httpx.get(f"{mirror.cache.url}/v2/team/app/manifests/1.0", headers=ACCEPT)

    assert second.status_code == 200
    assert second.headers["Docker-Content-Digest"] == str(moved.manifest.digest)
    assert second.content == moved.manifest.raw
    assert "Warning" not in second.headers


def test_a_cached_tag_is_served_stale_while_the_upstream_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="regtool.server.access")
    with contextlib.ExitStack() as running:
        upstream = running.enter_context(run_serve(tmp_path / "upstream"))
        image = push_image(upstream.host, tmp_path, "team/app", "1.0", LAYERS)
        with mirror_of(upstream.url, tmp_path / "cache") as cache:
            pull(f"{cache.host}/team/app:1.0", tmp_path / "warm")
            running.close()  # the upstream stops

            by_tag = httpx.get(f"{cache.url}/v2/team/app/manifests/1.0", headers=ACCEPT)
            by_digest = httpx.get(f"{cache.url}/v2/team/app/manifests/{image.manifest.digest}", headers=ACCEPT)
            unknown = httpx.get(f"{cache.url}/v2/team/app/manifests/2.0", headers=ACCEPT)
            tags = httpx.get(f"{cache.url}/v2/team/app/tags/list")
            again = pull(f"{cache.host}/team/app:1.0", tmp_path / "offline")

    assert by_tag.status_code == 200
    assert by_tag.content == image.manifest.raw
    assert by_tag.headers["Warning"] == '110 - "Response is Stale"'
    stale_lines = [r.getMessage() for r in caplog.records if r.name == "regtool.server.access"]
    assert any("serving cached manifest team/app:1.0" in line and "as stale" in line for line in stale_lines)
    assert by_digest.status_code == 200 and "Warning" not in by_digest.headers
    assert unknown.status_code == 503
    assert unknown.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert tags.json() == {"name": "team/app", "tags": ["1.0"]}
    assert again.digest == image.manifest.digest


def test_an_unknown_tag_or_blob_upstream_is_not_found(mirror: Mirror, tmp_path: Path) -> None:
    manifest = httpx.get(f"{mirror.cache.url}/v2/team/app/manifests/nope", headers=ACCEPT)
    absent = Digest.of(b"not there")
    blob = httpx.get(f"{mirror.cache.url}/v2/team/app/blobs/{absent}")

    assert manifest.status_code == 404
    assert manifest.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert blob.status_code == 404
    assert blob.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    with pytest.raises(NotFoundError):
        pull(f"{mirror.cache.host}/team/other:1.0", tmp_path / "none", retries=0)


def test_tags_come_from_upstream(mirror: Mirror, tmp_path: Path) -> None:
    push_image(mirror.upstream.host, tmp_path, "team/app", "2.0", [{"two.txt": b"2"}])

    listed = httpx.get(f"{mirror.cache.url}/v2/team/app/tags/list")

    assert listed.status_code == 200
    assert listed.json() == {"name": "team/app", "tags": ["1.0", "2.0"]}


def test_a_range_request_on_a_miss_gets_its_bytes(mirror: Mirror) -> None:
    layer = mirror.image.layers[1]
    digest = Digest.of(layer)

    partial = httpx.get(f"{mirror.cache.url}/v2/team/app/blobs/{digest}", headers={"Range": "bytes=100-1099"})

    assert partial.status_code == 206
    assert partial.headers["Content-Range"] == f"bytes 100-1099/{len(layer)}"
    assert partial.content == layer[100:1100]
    # The whole blob was cached by that request, verified.
    assert cached_bytes(mirror.cache, digest) == layer


def test_a_head_on_a_miss_asks_upstream_and_caches_nothing(mirror: Mirror) -> None:
    digest = Digest.of(mirror.image.layers[0])

    head = httpx.head(f"{mirror.cache.url}/v2/team/app/blobs/{digest}")

    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(mirror.image.layers[0]))
    assert head.headers["Docker-Content-Digest"] == str(digest)
    assert not cached_blob(mirror.cache, digest).exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/team/app/blobs/uploads/"),
        ("PUT", "/v2/team/app/manifests/2.0"),
        ("DELETE", "/v2/team/app/manifests/1.0"),
        ("DELETE", "/v2/team/app/blobs/sha256:" + "0" * 64),
    ],
)
def test_pushes_and_deletes_are_refused_as_unsupported(mirror: Mirror, method: str, path: str) -> None:
    body = json.dumps({"schemaVersion": 2}).encode() if method == "PUT" else None
    response = httpx.request(method, f"{mirror.cache.url}{path}", content=body)

    assert response.status_code == 405
    assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert "pull-through cache" in response.json()["errors"][0]["message"]


def test_a_blob_another_repository_cached_is_served_only_where_upstream_has_it(mirror: Mirror, tmp_path: Path) -> None:
    pull(f"{mirror.cache.host}/team/app:1.0", tmp_path / "warm")
    digest = Digest.of(mirror.image.layers[0])

    elsewhere = httpx.get(f"{mirror.cache.url}/v2/team/other/blobs/{digest}")

    assert elsewhere.status_code == 404
    assert elsewhere.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_a_cache_in_memory_storage_serves_misses_from_its_reads(mirror: Mirror, tmp_path: Path) -> None:
    # No file descriptors in memory: the bytes go out read a chunk at a time instead of by sendfile(2).
    with run_serve(None, proxy_remotes=mirror.cache.config.proxy_remotes) as cache:
        result = pull(f"{cache.host}/team/app:1.0", tmp_path / "pulled")
        again = pull(f"{cache.host}/team/app:1.0", tmp_path / "again")

    assert result.digest == again.digest == mirror.image.manifest.digest
    for digest, data in mirror.image.blobs.items():
        assert _blob_bytes(tmp_path / "pulled", digest) == data
    for digest in mirror.image.blobs:
        assert len(mirror.upstream.requests.events("GET", f"/blobs/{digest}")) == 1


def test_v1_pushes_are_refused_too(mirror: Mirror) -> None:
    response = httpx.put(f"{mirror.cache.url}/v1/repositories/team/app/", json=[])

    assert response.status_code == 405
    assert "pull-through cache" in response.text
