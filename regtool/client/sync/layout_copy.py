"""Directory -> directory: an image (and what refers to it) copied from one OCI layout into another.

The same guarantees as a pull into a layout, with a layout as the source: every blob is streamed through the
target's ``BlobWriter`` (1 MiB at a time, hashed on the way) and appears under ``blobs/`` only once its digest
and size match, so a corrupt source blob is refused with its layout named and nothing of it left behind; an
interrupted copy leaves a partial that the next run continues from where it stopped; blobs the target has are
skipped. Manifests are stored byte for byte, children first, and index.json names the image last, so a tag never
names an image the layout does not hold whole, and digests are kept.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from regtool.client.progress import Progress
from regtool.client.sync.layout_referrers import layout_lacks, layout_referrers
from regtool.client.tasks import run_bounded
from regtool.client.threads import in_thread
from regtool.digest import Digest
from regtool.errors import IntegrityError
from regtool.image.blobstore import BlobStore
from regtool.image.oci_layout import OciLayout
from regtool.manifest import Descriptor, Manifest, index_tree

__all__ = ["LayoutCopy", "copy_layout_image", "copy_layout_referrers"]

_CHUNK = 1 << 20


@dataclass
class LayoutCopy:
    """What a copy between layouts moved: blobs written (and their bytes), blobs the target had."""

    bytes: int = 0
    copied: int = 0
    skipped: int = 0


async def copy_layout_image(
    source: OciLayout,
    target: OciLayout,
    root: Manifest,
    *,
    ref_name: str | None,
    progress: Progress,
    jobs: int,
) -> LayoutCopy:
    """Copy the image or index ``root`` of ``source`` (its whole tree) into ``target``, then name it ``ref_name``
    there (None: an untagged entry). Only the manifests below ``root`` are read from ``source``: ``root`` may be
    a trimmed index that exists nowhere yet."""
    moved = LayoutCopy()
    manifests = [*await _tree(source, root), root]
    blobs: dict[Digest, Descriptor] = {}
    for manifest in manifests:
        for descriptor in (manifest.config, *manifest.layers):
            if descriptor is not None:
                blobs.setdefault(descriptor.digest, descriptor)

    async def one(descriptor: Descriptor) -> None:
        key = str(descriptor.digest)
        progress.start(key, descriptor.digest.short, descriptor.size)
        try:
            written = await in_thread(_copy_blob, source.blobs, target.blobs, descriptor)
        except BaseException:
            progress.finish(key, status="failed")
            raise
        if written is None:
            moved.skipped += 1
            progress.finish(key, status="skipped")
            return
        moved.copied += 1
        moved.bytes += written
        progress.advance(key, descriptor.size)
        progress.finish(key)

    try:
        # Largest first, so the long copies start early and the tail is short.
        await run_bounded(sorted(blobs.values(), key=lambda d: -d.size), one, jobs)
        for manifest in manifests:
            await in_thread(target.blobs.put_bytes, manifest.digest, manifest.raw)
    finally:
        # Every writer is closed here: the staging directory goes unless a partial is kept for the next run.
        target.blobs.tidy()
    await in_thread(lambda: target.add_manifest(root.descriptor(), ref_name=ref_name))
    return moved


async def _tree(layout: OciLayout, root: Manifest) -> list[Manifest]:
    """The manifests below the index ``root`` (none for an image), children first."""
    if not root.is_index:
        return []

    async def fetch(descriptors: Collection[Descriptor]) -> list[Manifest]:
        return await in_thread(lambda: [layout.manifest(d) for d in descriptors])

    return await index_tree(root, fetch, where=f"{layout.path}: index {root.digest}")


def _copy_blob(source: BlobStore, target: BlobStore, descriptor: Descriptor) -> int | None:
    """Stream one blob from ``source`` into ``target``, verified; the bytes written, None when it was there.
    Continues a partial an interrupted copy left. Runs in a worker thread."""
    digest = descriptor.digest
    if target.size(digest) == descriptor.size:
        return None
    with source.open_reader(digest) as reader, target.open_writer(digest, descriptor.size) as writer:
        resumed = writer.offset
        reader.seek(resumed)
        try:
            while chunk := reader.read(_CHUNK):
                writer.write(chunk)
            writer.commit()
        except IntegrityError as exc:
            raise IntegrityError(f"{source.root}: {exc}; nothing of it was kept in {target.root}") from None
    return descriptor.size - resumed


async def copy_layout_referrers(
    source: OciLayout,
    target: OciLayout,
    subject: Digest,
    *,
    artifact_types: Collection[str] | None,
    progress: Progress,
    jobs: int,
) -> int:
    """Copy what refers to ``subject`` in ``source`` (recursively, parents first) into ``target``, cosign's under
    their tags and the others as untagged entries, as a pull into a layout keeps them; how many it lacked."""
    found = await in_thread(layout_referrers, source, subject, artifact_types)
    entries = await in_thread(target.entries)
    copied = 0
    for referrer in found:
        if not layout_lacks(entries, referrer.manifest.digest, referrer.tag):
            continue
        await copy_layout_image(source, target, referrer.manifest, ref_name=referrer.tag, progress=progress, jobs=jobs)
        copied += 1
    return copied
