"""A write landing while a collection runs, made at a real point of the sweep: right after its first removal."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.manifest import parse_manifest
from regtool.server.errors import ApiError, ErrorCode
from regtool.server.gc import GcOptions, Removal, collect_garbage
from regtool.server.storage import paths
from regtool.server.storage.filesystem import FilesystemDriver
from regtool.server.storage.registry import Registry
from tests.gc.conftest import Filled, stored_blobs
from tests.server.helpers import image_manifest, push_blob, push_manifest
from tests.support.serve import run_serve


def test_a_manifest_tagged_during_the_sweep_stays_whole(filled: Filled) -> None:
    # gone's only image is untagged at the mark: with --delete-untagged it, its links and the repository would go.
    image = filled.scene.untagged["gone"]
    url = filled.server.url
    first: list[Removal] = []

    def tag_it_back(removal: Removal) -> None:
        if not first:
            first.append(removal)
            with httpx.Client(base_url=url) as client:
                pushed = push_manifest(client, "gone", "back", image.manifest.raw, mt.OCI_MANIFEST)
                assert pushed.status_code == 201, pushed.text

    registry = Registry(FilesystemDriver(filled.root))
    report = collect_garbage(registry, GcOptions(delete_untagged=True, delay=0), on_removed=tag_it_back)
    assert first and first[0].repository == "app"  # the write came before gone's turn
    assert "gone" not in [r.what for r in report.removed if r.kind == "repository"]
    served = httpx.get(f"{url}/v2/gone/manifests/back", headers={"Accept": mt.OCI_MANIFEST})
    assert served.content == image.manifest.raw
    kept = stored_blobs(filled.root)
    for digest, data in image.blobs.items():
        assert digest in kept
        assert httpx.get(f"{url}/v2/gone/blobs/{digest}").content == data


def test_blobs_pushed_during_the_sweep_wait_for_their_manifest(filled: Filled) -> None:
    url = filled.server.url
    config, layer = b'{"late": true}', b"pushed while the collector ran " * 20
    pushed: list[str] = []

    def push_blobs_now(removal: Removal) -> None:
        if not pushed:
            with httpx.Client(base_url=url) as client:
                pushed.extend(push_blob(client, "late", blob) for blob in (config, layer))

    registry = Registry(FilesystemDriver(filled.root))
    collect_garbage(registry, GcOptions(delete_untagged=True, delay=0), on_removed=push_blobs_now)
    assert len(pushed) == 2
    with httpx.Client(base_url=url) as client:
        raw = image_manifest(config, [layer])
        assert push_manifest(client, "late", "1", raw, mt.OCI_MANIFEST).status_code == 201
        assert client.get(f"/v2/late/blobs/{pushed[1]}").content == layer


def test_a_referrer_pushed_while_its_repository_is_read_keeps_its_referrers_entry(tmp_path: Path) -> None:
    # The push lands between the collector's reads of one repository: its revision and its entry both written
    # after some of the repository was listed.
    root = tmp_path / "registry"
    with run_serve(root) as server, httpx.Client(base_url=server.url) as client:
        config, layer = b"{}", b"the subject's layer" * 30
        for blob in (config, layer):
            push_blob(client, "team/app", blob)
        subject = image_manifest(config, [layer])
        assert push_manifest(client, "team/app", "v1", subject, mt.OCI_MANIFEST).status_code == 201
        subject_digest = str(Digest.of(subject))
        signature = image_manifest(
            config,
            [],
            artifact_type="application/example.sig",
            subject={"mediaType": mt.OCI_MANIFEST, "digest": subject_digest, "size": len(subject)},
        )
        signature_digest = str(Digest.of(signature))
        lists: list[str] = []

        class PushingMidRead(FilesystemDriver):
            def list(self, path: str) -> list[str]:
                if path == "repositories/team/app/_layers":
                    lists.append(path)
                    if len(lists) == 2:  # the sweep's own read of the repository
                        pushed = push_manifest(client, "team/app", signature_digest, signature, mt.OCI_MANIFEST)
                        assert pushed.status_code == 201, pushed.text
                return super().list(path)

        report = collect_garbage(Registry(PushingMidRead(root)), GcOptions())
        assert len(lists) >= 2, "the push landed mid-read"
        assert "referrer-entry" not in [r.kind for r in report.removed]
        found = client.get(f"/v2/team/app/referrers/{subject_digest}").json()["manifests"]
        assert [m["digest"] for m in found] == [signature_digest]


class _CollectingMidPut(FilesystemDriver):
    """A driver that runs a whole collection (another process's, on the same root) just before the revision of
    ``digest`` is written: the instant after a manifest put checked its blobs' links."""

    def __init__(self, root: Path, digest: Digest) -> None:
        super().__init__(root)
        self.revision = paths.manifest_revision("app", digest)
        self.collected = False

    def put_content(self, path: str, data: bytes) -> None:
        if path == self.revision and not self.collected:
            self.collected = True
            collect_garbage(Registry(FilesystemDriver(self.root)), GcOptions(delay=0))
        super().put_content(path, data)


def _linked(registry: Registry, config: bytes, layer: bytes, *names: str) -> list[Digest]:
    digests = [registry.blobs.put(data) for data in (config, layer)]
    for name in names:
        for digest in digests:
            registry.link_blob(name, digest)
    return digests


def test_links_a_collection_sweeps_during_a_manifest_put_are_made_again(tmp_path: Path) -> None:
    # The blobs are also another repository's, so their bytes stay; app's links, unreferenced at the sweep, go.
    config, layer = b'{"shared": true}', b"a layer two repositories hold " * 30
    raw = image_manifest(config, [layer])
    manifest = parse_manifest(raw, mt.OCI_MANIFEST)
    driver = _CollectingMidPut(tmp_path, manifest.digest)
    registry = Registry(driver)
    digests = _linked(registry, config, layer, "app", "other")
    registry.put_manifest("other", manifest, "1")
    registry.put_manifest("app", manifest, "1")
    assert driver.collected
    for digest in digests:
        assert registry.blob_linked("app", digest)
        assert registry.stat_blob("app", digest) > 0
    assert registry.get_manifest("app", "1").digest == manifest.digest


def test_a_manifest_put_whose_blobs_a_collection_removed_fails_and_tags_nothing(tmp_path: Path) -> None:
    config, layer = b'{"alone": true}', b"a layer only app held " * 30
    raw = image_manifest(config, [layer])
    manifest = parse_manifest(raw, mt.OCI_MANIFEST)
    driver = _CollectingMidPut(tmp_path, manifest.digest)
    registry = Registry(driver)
    _linked(registry, config, layer, "app")
    with pytest.raises(ApiError) as raised:
        registry.put_manifest("app", manifest, "1")
    assert raised.value.code is ErrorCode.MANIFEST_BLOB_UNKNOWN
    assert "1" not in registry.tags("app")
