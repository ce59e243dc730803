"""The Redis descriptor cache: shared by instances, invalidated by every delete, and never a reason to fail.

"Instances" here are Registry objects over one storage root and one real redis-server, the way several
``regtool serve`` processes share them; the store's work is counted by a driver that forwards to the real one
(tests/support/counting.py).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import UsageError
from regtool.protocol.errcodes import ErrorCode
from regtool.server.cache.rediscache import RedisDescriptorCache
from regtool.server.config import ServerConfig
from regtool.server.errors import ApiError
from regtool.server.storage import paths
from regtool.server.storage.filesystem import FilesystemDriver
from regtool.server.storage.registry import Registry
from tests.server.helpers import digest_of, image_manifest, push_blob, push_manifest, random_blob
from tests.support.counting import CountingDriver, count_store_calls
from tests.support.redis import RedisServer
from tests.support.serve import RunningServe, run_serve

pytestmark = pytest.mark.interop


def instance(root: Path, redis: RedisServer | None) -> tuple[Registry, CountingDriver]:
    """A registry process of its own over ``root`` (and the shared Redis), its store calls counted."""
    registry = Registry(FilesystemDriver(root), None if redis is None else RedisDescriptorCache(redis.addr))
    return registry, count_store_calls(registry)


@pytest.fixture
def cached_serve(tmp_path: Path, redis_server: RedisServer) -> Iterator[RunningServe]:
    with run_serve(tmp_path / "registry", redis_addr=redis_server.addr) as server:
        yield server


def push_image(client: httpx.Client, name: str) -> tuple[bytes, bytes, str]:
    layer, config = random_blob(4096), b'{"architecture":"amd64","os":"linux"}'
    push_blob(client, name, layer)
    push_blob(client, name, config)
    manifest = image_manifest(config, [layer])
    assert push_manifest(client, name, "v1", manifest, mt.OCI_MANIFEST).status_code == 201
    return layer, manifest, digest_of(manifest)


def test_another_instance_answers_blob_heads_and_manifests_from_the_cache(
    cached_serve: RunningServe, redis_server: RedisServer
) -> None:
    with httpx.Client(base_url=cached_serve.url) as client:
        layer, manifest, manifest_digest = push_image(client, "team/app")
    assert cached_serve.root is not None
    other, driver = instance(cached_serve.root, redis_server)
    uncached, uncached_driver = instance(cached_serve.root, None)

    digest = Digest.parse(digest_of(layer))
    assert other.stat_blob("team/app", digest) == len(layer)
    assert uncached.stat_blob("team/app", digest) == len(layer)
    assert driver.total() == 0  # the pushing instance told the cache: link and size
    assert dict(uncached_driver.calls) == {"get_content": 1, "stat": 1}  # the link read, then the data's size
    uncached_driver.reset()

    stored = other.get_manifest("team/app", manifest_digest)
    assert (stored.raw, stored.media_type) == (manifest, mt.OCI_MANIFEST)
    assert dict(driver.calls) == {"get_content": 1}  # the manifest bytes only
    uncached.get_manifest("team/app", manifest_digest)
    assert dict(uncached_driver.calls) == {"get_content": 2}  # the revision link (the media type), the bytes
    assert redis_server.command("EXISTS", f"regtool::blobs::{digest}") == ":1\r\n"


def test_deletes_on_one_instance_invalidate_the_others(cached_serve: RunningServe, redis_server: RedisServer) -> None:
    assert cached_serve.root is not None
    other, _ = instance(cached_serve.root, redis_server)
    with httpx.Client(base_url=cached_serve.url) as client:
        layer, _manifest, manifest_digest = push_image(client, "team/app")
        digest = Digest.parse(digest_of(layer))
        assert other.stat_blob("team/app", digest) == len(layer)
        assert other.get_manifest("team/app", manifest_digest).digest == Digest.parse(manifest_digest)

        assert client.delete(f"/v2/team/app/manifests/{manifest_digest}").status_code == 202
        assert client.delete(f"/v2/team/app/blobs/{digest}").status_code == 202

    with pytest.raises(ApiError) as blob_gone:
        other.stat_blob("team/app", digest)
    assert blob_gone.value.code is ErrorCode.BLOB_UNKNOWN
    with pytest.raises(ApiError) as manifest_gone:
        other.get_manifest("team/app", manifest_digest)
    assert manifest_gone.value.code is ErrorCode.MANIFEST_UNKNOWN


def test_garbage_collected_bytes_leave_the_cache(cached_serve: RunningServe, redis_server: RedisServer) -> None:
    assert cached_serve.root is not None
    collector, _ = instance(cached_serve.root, redis_server)
    other, driver = instance(cached_serve.root, redis_server)
    with httpx.Client(base_url=cached_serve.url) as client:
        digest = Digest.parse(push_blob(client, "team/app", b"doomed"))
    assert other.blobs.size(digest) == 6
    collector.blobs.delete(digest)
    assert redis_server.command("EXISTS", f"regtool::blobs::{digest}") == ":0\r\n"
    assert other.blobs.size(digest) is None
    assert driver.calls["stat"] == 1  # asked the store, which no longer has it
    with pytest.raises(ApiError) as gone:
        other.stat_blob("team/app", digest)
    assert gone.value.code is ErrorCode.BLOB_UNKNOWN


def test_redis_down_serves_uncached_and_says_so_once(
    cached_serve: RunningServe, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with httpx.Client(base_url=cached_serve.url) as client:
        layer, manifest, manifest_digest = push_image(client, "team/app")
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="regtool.server"):
            for _ in range(3):
                head = client.head(f"/v2/team/app/blobs/{digest_of(layer)}")
                assert head.status_code == 200
                assert head.headers["content-length"] == str(len(layer))
                assert client.get(f"/v2/team/app/blobs/{digest_of(layer)}").content == layer
                assert client.get(f"/v2/team/app/manifests/{manifest_digest}").content == manifest
            fresh = random_blob(2048)
            push_blob(client, "team/app", fresh)
            assert client.get(f"/v2/team/app/blobs/{digest_of(fresh)}").content == fresh
            assert client.head("/v2/team/app/blobs/" + digest_of(b"never pushed")).status_code == 404
    warnings = [r.getMessage() for r in caplog.records if r.name == "regtool.server"]
    assert len(warnings) == 1, warnings
    assert f"redis cache at {redis_server.addr} failed" in warnings[0]
    assert "serving uncached" in warnings[0]


def test_the_cache_comes_back_with_redis(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisDescriptorCache(redis_server.addr, retry_after=0.3)
    digest = Digest.of(b"x")
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="regtool.server"):
        cache.remember_blob("a", digest, None)
        assert not cache.available
        started = time.monotonic()
        assert cache.blob("a", digest) == (False, None)  # standing aside: no connection attempted
        assert time.monotonic() - started < 0.05
        redis_server.start()
        time.sleep(0.35)
        cache.remember_blob("a", digest, None)
        assert cache.available
        assert cache.blob("a", digest)[0] is True
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "failed" in messages[0] and "reachable again" in messages[1]
    # One lookup each: the one asked while Redis was away is one error (not also a miss), and writes count none.
    assert (cache.stats.hits, cache.stats.misses, cache.stats.errors) == (1, 0, 1)


@pytest.mark.parametrize("addr", ["127.0.0.1:notaport", "::1", "host:70000", ":6379"])
def test_a_bad_redis_address_is_refused_naming_it(tmp_path: Path, addr: str) -> None:
    with pytest.raises(UsageError, match="redis address") as refused:
        ServerConfig(root=tmp_path, redis_addr=addr)
    assert repr(addr) in str(refused.value)


def test_writes_trust_the_store_not_a_stale_cache(tmp_path: Path, redis_server: RedisServer) -> None:
    # Two stores sharing one Redis: every entry about the first store is stale for the second, as an entry can
    # be after a delete behind the cache's back. Reads may be misled for a moment; writes must not be.
    layer, config = random_blob(4096), b'{"os":"linux"}'
    with run_serve(tmp_path / "a", redis_addr=redis_server.addr) as a, httpx.Client(base_url=a.url) as client:
        push_blob(client, "team/app", layer)
        push_blob(client, "team/app", config)
    with run_serve(tmp_path / "b", redis_addr=redis_server.addr) as b, httpx.Client(base_url=b.url) as client:
        mount = client.post(f"/v2/other/blobs/uploads/?mount={digest_of(layer)}&from=team/app")
        assert mount.status_code == 202  # not mounted: b's store has no such blob
        push_blob(client, "team/app", config)
        manifest = image_manifest(config, [layer])
        refused = push_manifest(client, "team/app", "v1", manifest, mt.OCI_MANIFEST)
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
        push_blob(client, "team/app", layer)  # the upload's commit stores the bytes, whatever the cache says
        assert client.get(f"/v2/team/app/blobs/{digest_of(layer)}").content == layer
        assert push_manifest(client, "team/app", "v1", manifest, mt.OCI_MANIFEST).status_code == 201


def test_bytes_deleted_behind_the_cache_are_forgotten_at_the_first_get(
    cached_serve: RunningServe, redis_server: RedisServer
) -> None:
    assert cached_serve.root is not None
    with httpx.Client(base_url=cached_serve.url) as client:
        digest = push_blob(client, "team/app", b"evicted")
        # Deleted through the driver alone (as a tool that does not know the cache would), link left in place.
        FilesystemDriver(cached_serve.root).delete(paths.blob_data(Digest.parse(digest)).rsplit("/", 1)[0])
        assert client.head(f"/v2/team/app/blobs/{digest}").status_code == 200  # the cache's stale answer
        assert client.get(f"/v2/team/app/blobs/{digest}").status_code == 404  # the store's, and the entry goes
        assert client.head(f"/v2/team/app/blobs/{digest}").status_code == 404
    assert redis_server.command("EXISTS", f"regtool::blobs::{digest}") == ":0\r\n"


def test_serve_refuses_a_bad_redis_address_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "regtool", "serve", "--root", str(tmp_path / "root"), "--redis", "cache:http"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: redis address 'cache:http' must be HOST:PORT"]
    assert not (tmp_path / "root").exists()


def test_a_delete_redis_cannot_be_told_of_fails_and_deletes_nothing(
    cached_serve: RunningServe, redis_server: RedisServer
) -> None:
    # Entries never expire and a hit is answered without the store: a delete the cache missed would leave every
    # instance serving what it deleted. So it fails (503) and deletes nothing, and succeeds once Redis is back.
    with httpx.Client(base_url=cached_serve.url) as client:
        layer, manifest, manifest_digest = push_image(client, "team/app")
        assert client.head(f"/v2/team/app/blobs/{digest_of(layer)}").status_code == 200  # cached now
        redis_server.stop()
        for path in (f"/v2/team/app/manifests/{manifest_digest}", f"/v2/team/app/blobs/{digest_of(layer)}"):
            refused = client.delete(path)
            assert refused.status_code == 503, refused.text
            assert refused.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert client.get(f"/v2/team/app/manifests/{manifest_digest}").content == manifest
        assert client.get(f"/v2/team/app/blobs/{digest_of(layer)}").content == layer
        redis_server.start()
        assert client.delete(f"/v2/team/app/manifests/{manifest_digest}").status_code == 202
        assert client.get(f"/v2/team/app/manifests/{manifest_digest}").status_code == 404


class _DeleteAfterRead(FilesystemDriver):
    """A driver whose read of ``path`` is followed, before the reader goes on, by ``then`` (another instance's
    delete): the instant between a store read and the cache write it leads to."""

    def __init__(self, root: Path, path: str, then: object) -> None:
        super().__init__(root)
        self.path, self.then, self.done = path, then, False

    def get_content(self, path: str) -> bytes:
        data = super().get_content(path)
        if path == self.path and not self.done:
            self.done = True
            self.then()  # type: ignore[operator]
        return data


def test_a_delete_landing_between_a_read_and_its_cache_write_is_not_undone(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    root = tmp_path / "registry"
    writer = Registry(FilesystemDriver(root), RedisDescriptorCache(redis_server.addr))
    config, layer = b'{"architecture":"amd64","os":"linux"}', random_blob(4096)
    for data in (config, layer):
        writer.link_blob("team/app", writer.blobs.put(data))
    from regtool.manifest import parse_manifest

    manifest = parse_manifest(image_manifest(config, [layer]), mt.OCI_MANIFEST)
    writer.put_manifest("team/app", manifest, "v1")
    writer.link_blob("other/app", Digest.of(layer))  # the layer's bytes stay: another repository holds them
    writer.cache.forget_link("team/app", manifest.digest)  # type: ignore[union-attr]
    writer.cache.forget_link("team/app", Digest.of(layer))  # type: ignore[union-attr]

    # A manifest: read by one instance, deleted by another before the first one's cache write.
    revision = paths.manifest_revision("team/app", manifest.digest)
    reader = Registry(
        _DeleteAfterRead(root, revision, lambda: writer.delete_manifest("team/app", manifest.digest)),
        RedisDescriptorCache(redis_server.addr),
    )
    with pytest.raises(ApiError):
        reader.get_manifest("team/app", str(manifest.digest))
    for instance_ in (reader, writer):
        with pytest.raises(ApiError):
            instance_.get_manifest("team/app", str(manifest.digest))

    # A blob link: the same instant, between a HEAD's read of the link and its cache write.
    link = paths.layer_link("team/app", Digest.of(layer))
    reader = Registry(
        _DeleteAfterRead(root, link, lambda: writer.unlink_blob("team/app", Digest.of(layer))),
        RedisDescriptorCache(redis_server.addr),
    )
    with pytest.raises(ApiError):
        reader.stat_blob("team/app", Digest.of(layer))
    assert not writer.blob_linked("team/app", Digest.of(layer))
