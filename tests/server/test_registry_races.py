"""A manifest DELETE and a PUT of the same manifest under a new tag, interleaved at the two points where one
lands inside the other (each made real by a driver that runs the other operation, on the same store, at that
instant): a tag never names a manifest that is gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from regtool import mediatypes as mt
from regtool.manifest import Manifest, parse_manifest
from regtool.server.errors import ApiError
from regtool.server.storage import paths
from regtool.server.storage.filesystem import FilesystemDriver
from regtool.server.storage.registry import Registry
from tests.server.helpers import image_manifest


def _stored(registry: Registry) -> Manifest:
    config, layer = b'{"race": true}', b"a layer " * 100
    for data in (config, layer):
        registry.link_blob("app", registry.blobs.put(data))
    manifest = parse_manifest(image_manifest(config, [layer]), mt.OCI_MANIFEST)
    registry.put_manifest("app", manifest, "a")
    return manifest


def _served(registry: Registry, tag: str) -> bool:
    try:
        registry.get_manifest("app", tag)
    except ApiError:
        return False
    return True


class _DeletingBeforeTag(FilesystemDriver):
    """Deletes the manifest (another request, same store) just before the put writes tag ``b``."""

    def __init__(self, root: Path, digest_of: list[Manifest]) -> None:
        super().__init__(root)
        self.digest_of = digest_of
        self.done = False

    def put_content(self, path: str, data: bytes) -> None:
        if path == paths.tag_link("app", "b") and not self.done:
            self.done = True
            Registry(FilesystemDriver(self.root)).delete_manifest("app", self.digest_of[0].digest)
        super().put_content(path, data)


def test_a_delete_landing_inside_a_put_leaves_the_put_whole(tmp_path: Path) -> None:
    manifest = _stored(Registry(FilesystemDriver(tmp_path)))
    driver = _DeletingBeforeTag(tmp_path, [manifest])
    registry = Registry(driver)
    registry.put_manifest("app", manifest, "b")
    assert driver.done
    assert registry.tags("app") == ["b"]
    assert _served(registry, "b")


class _TaggingBeforeRevisionGoes(FilesystemDriver):
    """Puts the manifest under tag ``b`` (another request, same store) just before the delete removes the
    revision, after it looked for the manifest's tags."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        super().__init__(root)
        self.revision_dir = paths.manifest_revision("app", manifest.digest).rsplit("/", 1)[0]
        self.manifest = manifest
        self.done = False

    def delete(self, path: str) -> None:
        if path == self.revision_dir and not self.done:
            self.done = True
            Registry(FilesystemDriver(self.root)).put_manifest("app", self.manifest, "b")
        super().delete(path)


def test_a_put_landing_inside_a_delete_leaves_no_tag_naming_nothing(tmp_path: Path) -> None:
    manifest = _stored(Registry(FilesystemDriver(tmp_path)))
    driver = _TaggingBeforeRevisionGoes(tmp_path, manifest)
    registry = Registry(driver)
    registry.delete_manifest("app", manifest.digest)
    assert driver.done
    for tag in registry.tags("app"):
        assert _served(registry, tag), f"tag {tag} names a manifest that is gone"
    with pytest.raises(ApiError):
        registry.get_manifest("app", str(manifest.digest))
