"""A write landing while a collection runs, made at a real point of the sweep: right after its first removal."""

from __future__ import annotations

import httpx

from regtool.protocol import mediatypes as mt
from regtool.server.gc import GcOptions, Removal, collect_garbage
from regtool.server.storage.filesystem import FilesystemDriver
from regtool.server.storage.registry import Registry
from tests.gc.conftest import Filled, stored_blobs
from tests.server.helpers import push_manifest


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
