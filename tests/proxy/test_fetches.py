"""How the cache fetches from upstream: one GET per blob for concurrent pulls, corrupt bytes never cached, several
upstreams by ``?ns=``, and the cache's size cap and TTL."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import RegtoolError
from regtool.server.config import ProxyRemote
from regtool.server.proxy.limits import enforce_cache_limits, read_records
from tests.proxy.conftest import (
    LAYERS,
    Mirror,
    cached_blob,
    cached_bytes,
    mirror_of,
    pull,
    push_image,
    wait_no_uploads,
    wait_recorded,
)
from tests.support.faultproxy import Fault, run_fault_proxy
from tests.support.serve import run_serve

ACCEPT = {"Accept": mt.MANIFEST_ACCEPT}


def test_concurrent_cold_pulls_fetch_each_blob_once_upstream(tmp_path: Path) -> None:
    layers = [{f"layer{i}.bin": os.urandom(2 << 20)} for i in range(3)]
    # Upstream latency keeps the eight pulls' requests in flight together.
    with run_serve(tmp_path / "upstream", latency_ms=50) as upstream:
        image = push_image(upstream.host, tmp_path, "team/big", "1", layers)
        with mirror_of(upstream.url, tmp_path / "cache") as cache:
            upstream.requests.clear()
            results: list[Digest] = []
            errors: list[BaseException] = []

            def one(i: int) -> None:
                try:
                    results.append(pull(f"{cache.host}/team/big:1", tmp_path / f"pull{i}").digest)
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)

            assert not errors, errors
            assert results == [image.manifest.digest] * 8
            # The tag is revalidated for each pull; the manifest itself is fetched once.
            assert len(upstream.requests.events("HEAD", "/manifests/1")) == 8
            assert len(upstream.requests.events("GET", "/manifests/")) == 1
            for digest, data in image.blobs.items():
                gets = upstream.requests.events("GET", f"/blobs/{digest}")
                assert len(gets) == 1, (digest, len(gets))
                assert cached_bytes(cache, digest) == data
                for i in range(8):
                    assert (tmp_path / f"pull{i}/blobs/sha256" / digest.encoded).read_bytes() == data


def test_a_corrupted_upstream_blob_never_enters_the_cache_and_the_client_fails(tmp_path: Path) -> None:
    with run_serve(tmp_path / "upstream") as upstream:
        image = push_image(upstream.host, tmp_path, "team/app", "1.0", LAYERS)
        layer = image.layers[0]
        digest = Digest.of(layer)
        with run_fault_proxy(upstream.port) as proxy, mirror_of(proxy.url, tmp_path / "cache") as cache:
            proxy.add(Fault.flip(at=len(layer) // 2, path=f"/blobs/{digest}", times=100))

            with httpx.stream("GET", f"{cache.url}/v2/team/app/blobs/{digest}") as direct:
                assert direct.status_code == 200
                assert direct.headers["Content-Length"] == str(len(layer))
                # The connection closes before the last byte: the client never holds the bad blob whole.
                with pytest.raises(httpx.RemoteProtocolError, match=r"complete message body"):
                    direct.read()
            with pytest.raises(RegtoolError):
                pull(f"{cache.host}/team/app:1.0", tmp_path / "bad", retries=1)

            assert not cached_blob(cache, digest).exists()
            wait_no_uploads(cache)

            proxy.clear_faults()
            good = pull(f"{cache.host}/team/app:1.0", tmp_path / "good")
            assert good.digest == image.manifest.digest
            assert cached_bytes(cache, digest) == layer


def test_namespaces_map_to_their_upstreams(tmp_path: Path) -> None:
    with run_serve(tmp_path / "one") as one, run_serve(tmp_path / "two") as two:
        first = push_image(one.host, tmp_path / "a", "library/app", "1", [{"one.txt": b"from one"}])
        second = push_image(two.host, tmp_path / "b", "library/app", "1", [{"two.txt": b"from two"}])
        remotes = (ProxyRemote(one.url, namespace="one.example"), ProxyRemote(two.url, namespace="two.example"))
        with mirror_of("", tmp_path / "cache", *remotes) as cache:
            base = f"{cache.url}/v2/library/app/manifests/1"
            from_one = httpx.get(base, params={"ns": "one.example"}, headers=ACCEPT)
            from_two = httpx.get(base, params={"ns": "two.example"}, headers=ACCEPT)
            layer_two = Digest.of(second.layers[0])
            blob_two = httpx.get(f"{cache.url}/v2/library/app/blobs/{layer_two}", params={"ns": "two.example"})
            blob_cross = httpx.get(f"{cache.url}/v2/library/app/blobs/{layer_two}", params={"ns": "one.example"})
            unmapped = httpx.get(base, params={"ns": "three.example"}, headers=ACCEPT)
            plain = httpx.get(base, headers=ACCEPT)

    assert from_one.headers["Docker-Content-Digest"] == str(first.manifest.digest)
    assert from_two.headers["Docker-Content-Digest"] == str(second.manifest.digest)
    assert blob_two.content == second.layers[0]
    assert blob_cross.status_code == 404
    assert unmapped.status_code == 404 and unmapped.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    assert plain.status_code == 404


def test_the_default_upstream_takes_requests_without_a_mapped_namespace(tmp_path: Path) -> None:
    with run_serve(tmp_path / "hub") as hub, run_serve(tmp_path / "ghcr") as ghcr:
        default = push_image(hub.host, tmp_path / "a", "library/app", "1", [{"hub.txt": b"hub"}])
        mapped = push_image(ghcr.host, tmp_path / "b", "library/app", "1", [{"ghcr.txt": b"ghcr"}])
        with mirror_of(hub.url, tmp_path / "cache", ProxyRemote(ghcr.url, namespace="ghcr.io")) as cache:
            base = f"{cache.url}/v2/library/app/manifests/1"
            plain = httpx.get(base, headers=ACCEPT)
            docker_io = httpx.get(base, params={"ns": "docker.io"}, headers=ACCEPT)
            ghcr_io = httpx.get(base, params={"ns": "ghcr.io"}, headers=ACCEPT)

    assert plain.headers["Docker-Content-Digest"] == str(default.manifest.digest)
    assert docker_io.headers["Docker-Content-Digest"] == str(default.manifest.digest)
    assert ghcr_io.headers["Docker-Content-Digest"] == str(mapped.manifest.digest)


def _image_bytes(image_blobs: dict[Digest, bytes]) -> int:
    return sum(len(data) for data in image_blobs.values())


def test_the_size_cap_evicts_the_least_recently_used_content(tmp_path: Path) -> None:
    layer = 256 << 10
    with run_serve(tmp_path / "upstream") as upstream:
        images = {
            name: push_image(upstream.host, tmp_path, f"team/{name}", "1", [{f"{name}.bin": os.urandom(layer)}])
            for name in ("a", "b", "c")
        }
        # Room for two of the three images (each about one layer), not three.
        with mirror_of(upstream.url, tmp_path / "cache", proxy_max_size=int(2.5 * layer)) as cache:
            pull(f"{cache.host}/team/a:1", tmp_path / "a1")
            wait_recorded(cache, images["a"].blobs)
            pull(f"{cache.host}/team/b:1", tmp_path / "b1")
            wait_recorded(cache, images["b"].blobs)
            time.sleep(0.01)
            pull(f"{cache.host}/team/a:1", tmp_path / "a2")  # a is now more recent than b
            time.sleep(0.01)
            pull(f"{cache.host}/team/c:1", tmp_path / "c1")

            def cached(name: str) -> bool:
                return cached_blob(cache, Digest.of(images[name].layers[0])).exists()

            def recorded() -> int:
                return sum(e.size for e in read_records(cache.app.state.context.driver))

            # The last pull's blobs were verified and sent before the cache made room for them: wait for it (an
            # evicted blob's data goes a moment before its record).
            deadline = time.monotonic() + 5
            while (cached("b") or recorded() > int(2.5 * layer)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert cached("a") and cached("c")
            assert not cached("b")
            assert recorded() <= int(2.5 * layer)

            # An evicted blob is fetched again on the next pull.
            upstream.requests.clear()
            again = pull(f"{cache.host}/team/b:1", tmp_path / "b2")
            assert again.digest == images["b"].manifest.digest
            assert len(upstream.requests.events("GET", f"/blobs/{Digest.of(images['b'].layers[0])}")) == 1


def test_content_unused_past_the_ttl_is_removed_and_fetched_again(mirror: Mirror, tmp_path: Path) -> None:
    pull(f"{mirror.cache.host}/team/app:1.0", tmp_path / "warm")
    driver = mirror.cache.app.state.context.driver
    blobs = [*mirror.image.blobs, mirror.image.manifest.digest]
    wait_recorded(mirror.cache, blobs)
    assert all(cached_blob(mirror.cache, d).exists() for d in blobs)

    kept = enforce_cache_limits(driver, ttl=3600, max_size=None)
    assert kept.removed == ()
    report = enforce_cache_limits(driver, ttl=3600, max_size=None, now=time.time() + 3601)

    assert set(report.removed) == set(blobs)
    assert report.freed == _image_bytes(mirror.image.blobs) + len(mirror.image.manifest.raw)
    assert not any(cached_blob(mirror.cache, d).exists() for d in blobs)
    mirror.upstream.requests.clear()
    again = pull(f"{mirror.cache.host}/team/app:1.0", tmp_path / "again")
    assert again.digest == mirror.image.manifest.digest
    for digest in mirror.image.blobs:
        assert len(mirror.upstream.requests.events("GET", f"/blobs/{digest}")) == 1


def test_the_cache_removes_expired_content_on_its_own(tmp_path: Path) -> None:
    with run_serve(tmp_path / "upstream") as upstream:
        image = push_image(upstream.host, tmp_path, "team/app", "1.0", LAYERS)
        with mirror_of(upstream.url, tmp_path / "cache", proxy_ttl=1.0) as cache:
            pull(f"{cache.host}/team/app:1.0", tmp_path / "warm")
            layer = Digest.of(image.layers[0])
            wait_recorded(cache, [layer])
            time.sleep(1.5)
            # Any request after the sweep interval runs the sweep; this one revalidates a tag.
            httpx.get(f"{cache.url}/v2/team/app/manifests/1.0", headers=ACCEPT)
            deadline = time.monotonic() + 5
            while cached_blob(cache, layer).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not cached_blob(cache, layer).exists()


def test_an_upstream_body_cut_short_is_not_cached_and_a_retry_gets_the_blob(tmp_path: Path) -> None:
    big = [{"big.bin": os.urandom(3 << 20)}]
    with run_serve(tmp_path / "upstream") as upstream:
        image = push_image(upstream.host, tmp_path, "team/app", "1.0", big)
        layer = image.layers[0]
        digest = Digest.of(layer)
        with run_fault_proxy(upstream.port) as proxy, mirror_of(proxy.url, tmp_path / "cache") as cache:
            proxy.add(Fault.drop(after=len(layer) // 2, path=f"/blobs/{digest}"))

            with httpx.stream("GET", f"{cache.url}/v2/team/app/blobs/{digest}") as cut:
                with pytest.raises(httpx.RemoteProtocolError):
                    cut.read()
            assert not cached_blob(cache, digest).exists()
            wait_no_uploads(cache)

            result = pull(f"{cache.host}/team/app:1.0", tmp_path / "pulled")

            assert result.digest == image.manifest.digest
            assert cached_bytes(cache, digest) == layer
            assert len(proxy.exchanges("GET", f"/blobs/{digest}")) == 2


def test_least_recently_used_survives_a_restart(tmp_path: Path) -> None:
    layer = 256 << 10
    with run_serve(tmp_path / "upstream") as upstream:
        images = {
            name: push_image(upstream.host, tmp_path, f"team/{name}", "1", [{f"{name}.bin": os.urandom(layer)}])
            for name in ("a", "b", "c")
        }
        with mirror_of(upstream.url, tmp_path / "cache") as first:
            pull(f"{first.host}/team/a:1", tmp_path / "a1")
            wait_recorded(first, images["a"].blobs)
            time.sleep(0.01)
            pull(f"{first.host}/team/b:1", tmp_path / "b1")
            wait_recorded(first, images["b"].blobs)
        time.sleep(0.01)
        # A new process on the same store: a is used again, so b is now the least recently used.
        with mirror_of(upstream.url, tmp_path / "cache", proxy_max_size=int(2.5 * layer)) as second:
            pull(f"{second.host}/team/a:1", tmp_path / "a2")
            pull(f"{second.host}/team/c:1", tmp_path / "c1")

            def cached(name: str) -> bool:
                return cached_blob(second, Digest.of(images[name].layers[0])).exists()

            deadline = time.monotonic() + 5
            while cached("b") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert cached("a") and cached("c")
            assert not cached("b")
