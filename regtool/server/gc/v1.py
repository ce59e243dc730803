"""v1 images in a collection: which ones a v1 tag reaches, and the removal of the others.

The v1 image store (``storage/v1images.py``) keeps each image in ``v1/images/<id>/``, its layer in the shared blob
store. Live are the images in the ancestry of an image a v1 tag names, and in the ancestry of an image written
within the grace period (a v1 push writes its images first and tags the top one last) or whose layer upload was
active within it (``v1uploads.py``). An image a push left incomplete (its JSON without a layer, or without the
checksum PUT that ends it) is an image like any other here: kept while a tag reaches it or it is recent.

A live image keeps its layer blob and the decompressed layer the v2 API shows for it (``_v2layer``). The
directory of any other image goes in the collector's second phase, with the repository links; its blobs go in
the third with the other unreachable blobs, unless v2 still uses them (the manifest made for a v1 tag stays while
v2's rules keep it).
v1 repositories stay once tagged: what is left of one after its tags were deleted is the metadata search lists
(one a push never tagged goes: ``v1repositories.py``).

A v1 push may re-use an image the mark found unreachable: a new image naming it as its parent, or a tag naming
it. Each image JSON and tag written leaves a new write token (``write_token``); the token is read before a mark
and again before each removal, and the images are marked again when it changed. What remains is the instant
between that read and the removal, as for v2 content (``collector.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from regtool.digest import Digest
from regtool.errors import InvalidDigest
from regtool.manifest import Descriptor, ManifestError
from regtool.protocol.v1 import IMAGE_ID_RE
from regtool.server.gc.inventory import children
from regtool.server.gc.report import Removal
from regtool.server.gc.v1uploads import active_upload_images
from regtool.server.storage import paths
from regtool.server.storage.driver import PathNotFound, StorageDriver
from regtool.server.storage.v1images import V1Error, image_file, write_token

__all__ = ["V1Mark", "mark_v1", "sweep_v1_images"]

_IMAGES = f"{paths.V1}/images"
_REPOSITORIES = f"{paths.V1}/repositories"
# In a v1 repository's directory, nested repositories' escaped names start with "_", and so do these files;
# "_json_<tag>" may be either (a repository named "json_<x>"), so it is told apart by a stat.
_REPOSITORY_FILES = ("_index_images", "_private")


@dataclass(frozen=True, slots=True)
class V1Mark:
    """One mark of the v1 store: the write token read before it, every image directory seen, the live images
    and the blobs they keep."""

    token: bytes | None
    images: frozenset[str]
    live: frozenset[str]
    blobs: frozenset[Digest]


def mark_v1(driver: StorageDriver, cutoff: float) -> V1Mark:
    """The live v1 images and their blobs; ``cutoff``: the time before which nothing counts as recent."""
    token = write_token(driver)  # first: a write during the mark changes it, and the next check marks again
    images = frozenset(i for i in children(driver, _IMAGES) if IMAGE_ID_RE.match(i))
    roots = set(_tagged_images(driver, _REPOSITORIES))
    roots.update(i for i in images if (newest := last_written(driver, i)) is not None and newest > cutoff)
    roots.update(active_upload_images(driver, cutoff))
    live: set[str] = set()
    for root in roots:
        live.update(_ancestry(driver, root))
    blobs = {blob for image_id in live & images for blob in _image_blobs(driver, image_id)}
    return V1Mark(token, images, frozenset(live & images), frozenset(blobs))


def sweep_v1_images(
    driver: StorageDriver, mark: V1Mark, *, cutoff: float, dry_run: bool, removed: Callable[[Removal], None]
) -> None:
    """Remove the directory of each image ``mark`` found unreachable, re-checked just before (see the module)."""
    for image_id in sorted(mark.images - mark.live):
        if not dry_run:
            if write_token(driver) != mark.token:
                mark = mark_v1(driver, cutoff)
                if image_id in mark.live:
                    continue
            newest = last_written(driver, image_id)
            if newest is not None and newest > cutoff:
                continue  # written again since the mark (a push of the same image resumed)
            try:
                driver.delete(f"{_IMAGES}/{image_id}")
            except PathNotFound:
                continue
        removed(Removal("v1-image", image_id))


def last_written(driver: StorageDriver, image_id: str) -> float | None:
    """The newest time among image ``image_id``'s files; None when it has none."""
    directory = f"{_IMAGES}/{image_id}"
    times = []
    for name in children(driver, directory):
        try:
            times.append(driver.stat(f"{directory}/{name}").modified)
        except PathNotFound:
            continue
    return max(times, default=None)


def _tagged_images(driver: StorageDriver, directory: str) -> Iterator[str]:
    """The image ids the v1 tags under ``directory`` name, nested repositories included."""
    for name in children(driver, directory):
        path = f"{directory}/{name}"
        if name.startswith("tag_"):
            try:
                image_id = driver.get_content(path).decode()
            except (PathNotFound, UnicodeDecodeError):
                continue
            if IMAGE_ID_RE.match(image_id):
                yield image_id
        elif name.startswith("_") and name not in _REPOSITORY_FILES:
            try:
                is_dir = driver.stat(path).is_dir
            except PathNotFound:
                continue
            if is_dir:
                yield from _tagged_images(driver, path)


def _ancestry(driver: StorageDriver, image_id: str) -> list[str]:
    """``image_id`` and its parents, as the image's ``ancestry`` file lists them (the image alone without one)."""
    try:
        loaded = json.loads(driver.get_content(image_file(image_id, "ancestry")))
    except (PathNotFound, ValueError, V1Error):
        return [image_id]
    if not isinstance(loaded, list):
        return [image_id]
    return [image_id, *(i for i in loaded if isinstance(i, str))]


def _image_blobs(driver: StorageDriver, image_id: str) -> Iterator[Digest]:
    """The blobs image ``image_id`` uses: its layer, and the layer as v2 shows it when that differs."""
    try:
        yield Digest.parse(driver.get_content(image_file(image_id, "layer")).decode())
    except (PathNotFound, InvalidDigest, UnicodeDecodeError):
        pass
    try:
        # Written by v1mirror: a bzip2 or xz layer is shown over v2 as its decompressed tar, another blob.
        record = json.loads(driver.get_content(image_file(image_id, "_v2layer")))
        yield Descriptor.from_json(record["descriptor"]).digest
    except (PathNotFound, ValueError, KeyError, TypeError, ManifestError):
        pass
