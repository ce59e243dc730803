"""Content older than the grace period and unreferenced, re-used by a push in the middle of a collection, after
the mark that found it unreachable and before its removal: the collector keeps it, and the pushed image pulls.

The push goes through the real HTTP API of a running serve, from the collector's ``on_phase`` hook (the moment
a phase's mark is taken, before its first removal), on every driver.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.server.gc import GcOptions, collect_garbage
from regtool.server.gc.collector import Phase
from regtool.server.gc.inventory import stored_blobs
from regtool.server.storage.registry import Registry
from tests.cli.support import in_process
from tests.gc.conftest import serve_on
from tests.server.helpers import image_manifest, index_manifest, push_blob, push_manifest
from tests.support.serve import RunningServe

# On SeaweedFS a time is whole seconds: content pushed more than a second before the run is older than a grace
# period of one second, and anything written during the run is younger.
GRACE = 1.0
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
LAYER = b"a layer nothing has named for longer than the grace period " * 300


@dataclass
class Store:
    server: RunningServe
    registry: Registry


@pytest.fixture(params=["filesystem", "inmemory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with serve_on(request.param, request, tmp_path) as server:
        registry = server.app.state.context.registry
        assert isinstance(registry, Registry)
        yield Store(server, registry)


def _collect_while(store: Store, writes: dict[Phase, Callable[[httpx.Client], None]], **options: bool) -> list[str]:
    """Collect with each of ``writes`` made when its phase's mark is taken; what went, as "kind what"."""
    time.sleep(GRACE + 0.1)
    made: list[Phase] = []

    def at(reached: Phase) -> None:
        if reached in writes:
            with httpx.Client(base_url=store.server.url) as client:
                writes[reached](client)
            made.append(reached)

    report = collect_garbage(store.registry, GcOptions(delay=GRACE, **options), on_phase=at)
    assert made == list(writes)
    return [f"{removal.kind} {removal.what}" for removal in report.removed]


def _assert_pulls(store: Store, reference: str, blobs: dict[str, bytes], tmp: Path) -> None:
    """``reference`` pulls with regtool, every blob the bytes pushed; the store holds them."""
    dest = tmp / "pulled"
    done = in_process("pull", f"{store.server.host}/{reference}", str(dest))
    assert done.returncode == 0, done.stderr
    pulled = {f"sha256:{p.name}": p.read_bytes() for p in (dest / "blobs" / "sha256").iterdir()}
    for digest, data in blobs.items():
        assert pulled.get(digest) == data, f"{digest} not pulled whole"
    kept = {digest for digest, _ in stored_blobs(store.registry.driver)}
    assert {Digest.parse(d) for d in blobs} <= kept


def _orphans(client: httpx.Client, repository: str) -> dict[str, bytes]:
    """A config and a layer uploaded to ``repository`` and never named by a manifest."""
    return {push_blob(client, repository, blob): blob for blob in (CONFIG, LAYER)}


def test_the_same_bytes_uploaded_again_after_the_last_mark(store: Store, tmp_path: Path) -> None:
    with httpx.Client(base_url=store.server.url) as client:
        blobs = _orphans(client, "old")
    manifest = image_manifest(CONFIG, [LAYER])

    def push_again(client: httpx.Client) -> None:
        assert [push_blob(client, "new", blob) for blob in (CONFIG, LAYER)] == list(blobs)
        assert push_manifest(client, "new", "1", manifest, mt.OCI_MANIFEST).status_code == 201

    removed = _collect_while(store, {"blobs": push_again})
    _assert_pulls(store, "new:1", {**blobs, str(Digest.of(manifest)): manifest}, tmp_path)
    # The old repository's links went in the phase before; the bytes, re-used since, stayed.
    assert sorted(removed) == [*sorted(f"link {digest}" for digest in blobs), "repository old"]


def test_a_manifest_naming_blobs_its_repository_linked_long_ago(store: Store, tmp_path: Path) -> None:
    with httpx.Client(base_url=store.server.url) as client:
        blobs = _orphans(client, "app")
    manifest = image_manifest(CONFIG, [LAYER])

    def push_manifest_only(client: httpx.Client) -> None:
        assert push_manifest(client, "app", "1", manifest, mt.OCI_MANIFEST).status_code == 201

    removed = _collect_while(store, {"links": push_manifest_only})
    _assert_pulls(store, "app:1", {**blobs, str(Digest.of(manifest)): manifest}, tmp_path)
    assert removed == []


def test_a_mount_after_the_last_mark_from_a_repository_whose_manifest_went(store: Store, tmp_path: Path) -> None:
    with httpx.Client(base_url=store.server.url) as client:
        blobs = _orphans(client, "src")
        named = image_manifest(CONFIG, [LAYER])
        assert push_manifest(client, "src", "1", named, mt.OCI_MANIFEST).status_code == 201
    manifest = image_manifest(CONFIG, [LAYER], annotations={"copy": "mounted"})

    def delete_the_manifest(client: httpx.Client) -> None:
        # Live when the links were marked, so src keeps its links; gone when the blobs are marked.
        assert client.delete(f"/v2/src/manifests/{Digest.of(named)}").status_code == 202

    def mount_and_push(client: httpx.Client) -> None:
        for digest in blobs:
            mounted = client.post("/v2/new/blobs/uploads/", params={"mount": digest, "from": "src"})
            assert mounted.status_code == 201, mounted.text
        assert push_manifest(client, "new", "1", manifest, mt.OCI_MANIFEST).status_code == 201

    removed = _collect_while(store, {"links": delete_the_manifest, "blobs": mount_and_push})
    _assert_pulls(store, "new:1", {**blobs, str(Digest.of(manifest)): manifest}, tmp_path)
    assert removed == [f"blob {Digest.of(named)}"]  # the deleted manifest's own bytes, which nothing re-used


def test_an_index_naming_an_untagged_manifest(store: Store, tmp_path: Path) -> None:
    child = image_manifest(CONFIG, [LAYER])
    with httpx.Client(base_url=store.server.url) as client:
        blobs = _orphans(client, "app")
        assert push_manifest(client, "app", str(Digest.of(child)), child, mt.OCI_MANIFEST).status_code == 201
    index = index_manifest([child])

    def push_index(client: httpx.Client) -> None:
        assert push_manifest(client, "app", "multi", index, mt.OCI_INDEX).status_code == 201

    # Untagged at the mark: with --delete-untagged the child, its links and its blobs would all go.
    removed = _collect_while(store, {"manifests": push_index}, delete_untagged=True)
    served = httpx.get(f"{store.server.url}/v2/app/manifests/multi", headers={"Accept": mt.OCI_INDEX})
    assert (served.status_code, served.content) == (200, index)
    # A pull stores the platform's image, not the index itself.
    _assert_pulls(store, "app:multi", {**blobs, str(Digest.of(child)): child}, tmp_path)
    assert removed == []
