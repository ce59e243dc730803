"""How many requests serve sends to the object store (SeaweedFS) to answer a pull, with and without Redis.

A pull is one manifest GET and a blob GET per layer, each blob GET a 307 to a presigned URL; the store's round
trips are what such a request costs beyond the local work, so their number is pinned here. They are counted as
botocore makes them (its ``before-call`` event: once per S3 operation, a retry under load not counted again).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from regtool import mediatypes as mt
from regtool.server.gc import GcOptions, collect_garbage
from regtool.server.storage.s3 import S3Driver
from tests.server.helpers import digest_of, image_manifest, push_blob, push_manifest, random_blob
from tests.support.redis import RedisServer
from tests.support.seaweedfs import S3Bucket
from tests.support.serve import RunningServe, run_serve

pytestmark = pytest.mark.interop


class StoreRequests:
    """Counts the S3 operations a botocore client makes, as ``Operation kind`` (kind: the key's last component)."""

    def __init__(self, client: Any) -> None:
        self._lock = threading.Lock()
        self.sent: Counter[str] = Counter()
        client.meta.events.register("before-call.s3", self._called)

    def _called(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        kind = str(params["url_path"]).split("?", 1)[0].rsplit("/", 1)[-1]
        with self._lock:
            self.sent[f"{model.name} {kind}"] += 1

    def take(self) -> Counter[str]:
        with self._lock:
            sent, self.sent = self.sent, Counter()
        return sent


def counted(server: RunningServe) -> StoreRequests:
    driver = server.app.state.context.driver
    assert isinstance(driver, S3Driver)
    return StoreRequests(driver.client)


def push_image(http: httpx.Client, name: str) -> tuple[list[str], str]:
    """An image of a config and two layers, tagged ``v1``: its blob digests and the manifest's digest."""
    layers = [random_blob(50_000), random_blob(60_000)]
    config = b'{"architecture":"amd64","os":"linux"}'
    blobs = [push_blob(http, name, blob) for blob in (config, *layers)]
    manifest = image_manifest(config, layers)
    assert push_manifest(http, name, "v1", manifest, mt.OCI_MANIFEST).status_code == 201
    return blobs, digest_of(manifest)


@pytest.fixture
def s3_serve(s3_bucket: S3Bucket) -> Iterator[RunningServe]:
    with run_serve(None, storage="s3", s3=s3_bucket.settings) as server:
        yield server


@pytest.fixture
def s3_serve_cached(s3_bucket: S3Bucket, redis_server: RedisServer) -> Iterator[RunningServe]:
    redis_server.command("FLUSHALL")
    with run_serve(None, storage="s3", s3=s3_bucket.settings, redis_addr=redis_server.addr) as server:
        yield server


def test_a_pull_without_a_cache(s3_serve: RunningServe) -> None:
    with httpx.Client(base_url=s3_serve.url) as http:
        blobs, manifest = push_image(http, "team/app")
        store = counted(s3_serve)

        assert http.get("/v2/team/app/manifests/v1").status_code == 200
        # The tag's link, the revision's link (the media type, and that the repository holds it), the bytes.
        assert store.take() == {"GetObject link": 2, "GetObject data": 1}
        assert http.head(f"/v2/team/app/manifests/{manifest}").status_code == 200
        assert store.take() == {"GetObject link": 1, "GetObject data": 1}

        for method in ("GET", "HEAD"):
            for digest in blobs:
                assert http.request(method, f"/v2/team/app/blobs/{digest}").status_code == 307
            # The repository's link alone: the bytes are the store's to serve (or refuse) at the presigned URL.
            assert store.take() == {"GetObject link": len(blobs)}

        missing = digest_of(b"never pushed")
        assert http.get(f"/v2/team/app/blobs/{missing}").json()["errors"][0]["code"] == "BLOB_UNKNOWN"
        assert store.take() == {"GetObject link": 1}
        # Stored, but not linked in this repository: refused as well, not redirected to.
        for method in ("GET", "HEAD"):
            assert http.request(method, f"/v2/team/other/blobs/{blobs[1]}").status_code == 404
        assert store.take() == {"GetObject link": 2}


def test_a_pull_with_redis(s3_serve_cached: RunningServe) -> None:
    with httpx.Client(base_url=s3_serve_cached.url) as http:
        blobs, manifest = push_image(http, "team/app")
        store = counted(s3_serve_cached)

        assert http.get("/v2/team/app/manifests/v1").status_code == 200
        assert store.take() == {"GetObject link": 1, "GetObject data": 1}  # tags move, so they are never cached
        assert http.get(f"/v2/team/app/manifests/{manifest}").status_code == 200
        assert store.take() == {"GetObject data": 1}

        for method in ("GET", "HEAD"):
            for digest in blobs:
                assert http.request(method, f"/v2/team/app/blobs/{digest}").status_code == 307
            assert store.take() == {}


def test_a_deleted_blob_is_not_redirected_to(s3_serve_cached: RunningServe) -> None:
    with httpx.Client(base_url=s3_serve_cached.url) as http:
        blobs, _ = push_image(http, "team/app")
        layer = blobs[1]
        location = http.get(f"/v2/team/app/blobs/{layer}").headers["location"]
        assert httpx.get(location).status_code == 200
        assert http.delete(f"/v2/team/app/blobs/{layer}").status_code == 202
        for method in ("GET", "HEAD"):
            assert http.request(method, f"/v2/team/app/blobs/{layer}").status_code == 404


def test_a_collected_blob_is_not_redirected_to(s3_serve_cached: RunningServe) -> None:
    with httpx.Client(base_url=s3_serve_cached.url) as http:
        blobs, manifest = push_image(http, "team/app")
        assert all(http.get(f"/v2/team/app/blobs/{digest}").status_code == 307 for digest in blobs)  # cached now
        assert http.delete(f"/v2/team/app/manifests/{manifest}").status_code == 202
        collect_garbage(s3_serve_cached.app.state.context.registry, GcOptions(delay=0))
        for method in ("GET", "HEAD"):
            for digest in blobs:
                assert http.request(method, f"/v2/team/app/blobs/{digest}").status_code == 404
