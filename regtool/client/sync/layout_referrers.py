"""Referrers at a directory end of a sync: kept in the repository's OCI layout, so an air gap carries signatures.

Into a layout (registry -> directory): what refers to the copied image (``find_referrers``: the referrers API, the
tag schema, cosign's tags, recursively) is pulled into the same layout, a cosign referrer under its tag (a ref
name of index.json), the others as untagged entries (each such manifest names its ``subject``).

Out of a layout (directory -> registry): the layout's referrers of the image are found again, cosign's by tag and
the others by the ``subject`` of the untagged entries, recursively, and pushed by digest (cosign's to their tag).
Where the target has no referrers API, the tag-schema index is merged there (``write_tag_schema``), as a copy
between registries does.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from regtool.client.progress import Progress
from regtool.client.threads import in_thread
from regtool.client.v2.api import RegistryAPI
from regtool.client.v2.rangefetch import SplitPolicy
from regtool.client.v2.referrers import (
    COSIGN_SUFFIXES,
    MAX_DEPTH,
    cosign_artifact_type,
    find_referrers,
    has_referrers_api,
    schema_tag,
    write_tag_schema,
)
from regtool.digest import Digest
from regtool.errors import NotFoundError
from regtool.image.oci_layout import REF_NAME_ANNOTATION, OciLayout
from regtool.manifest import Descriptor, Manifest
from regtool.protocol import v2
from regtool.reference import Reference

__all__ = ["LayoutReferrer", "layout_lacks", "layout_referrers", "present_at", "pull_referrers", "push_referrers"]


async def pull_referrers(
    api: RegistryAPI,
    repository: Reference,
    path: Path,
    subject: Digest,
    *,
    artifact_types: Collection[str] | None,
    tags: Collection[str] | None,
    progress: Progress,
    jobs: int,
    split: SplitPolicy | None,
) -> int:
    """Pull what refers to ``subject`` in ``repository`` into the layout at ``path``; how many were not there."""
    from regtool.client.v2.pull import V2Puller

    found = await find_referrers(api, repository, subject, artifact_types=artifact_types, tags=tags)
    layout = await in_thread(OciLayout.open, path)
    entries = await in_thread(layout.entries)
    pulled = 0
    for referrer in found:
        if not layout_lacks(entries, referrer.digest, referrer.tag):
            continue
        ref = Reference(repository.registry, repository.repository, referrer.tag, referrer.digest)
        puller = V2Puller(api, jobs=jobs, progress=progress, split=split)
        await puller.pull(ref, path, format="oci", all_platforms=True)
        pulled += 1
    return pulled


def layout_lacks(entries: Collection[Descriptor], digest: Digest, tag: str | None) -> bool:
    """Whether a layout whose index.json lists ``entries`` lacks the referrer ``digest`` (or, for a cosign
    referrer, its ``tag``)."""
    if tag is not None:
        return not any(d.digest == digest and d.annotations.get(REF_NAME_ANNOTATION) == tag for d in entries)
    return not any(d.digest == digest for d in entries)


@dataclass(frozen=True, slots=True)
class LayoutReferrer:
    """A referrer kept in a layout: its manifest, the manifest it refers to, and its cosign ``tag`` if it has one."""

    manifest: Manifest
    subject: Digest
    artifact_type: str | None
    tag: str | None = None


def layout_referrers(
    layout: OciLayout, subject: Digest, artifact_types: Collection[str] | None
) -> list[LayoutReferrer]:
    """The referrers of ``subject`` kept in ``layout`` (and theirs), parents first; reads files (call in a thread)."""
    wanted = frozenset(artifact_types) if artifact_types is not None else None
    entries = layout.entries()
    by_tag = {name: d for d in entries if (name := d.annotations.get(REF_NAME_ANNOTATION)) is not None}
    untagged = [layout.manifest(d) for d in entries if REF_NAME_ANNOTATION not in d.annotations]
    found: list[LayoutReferrer] = []
    seen = {subject}
    level = [subject]
    for _depth in range(MAX_DEPTH):
        following: list[Digest] = []
        for parent in level:
            candidates = [
                LayoutReferrer(m, parent, m.effective_artifact_type())
                for m in untagged
                if m.subject is not None and m.subject.digest == parent
            ]
            for suffix in COSIGN_SUFFIXES:
                tag = f"{schema_tag(parent)}.{suffix}"
                if tag in by_tag:
                    manifest = layout.manifest(by_tag[tag])
                    candidates.append(LayoutReferrer(manifest, parent, cosign_artifact_type(manifest), tag))
            for referrer in candidates:
                if referrer.manifest.digest in seen:
                    continue
                if wanted is not None and referrer.artifact_type not in wanted:
                    continue
                seen.add(referrer.manifest.digest)
                found.append(referrer)
                following.append(referrer.manifest.digest)
        if not following:
            break
        level = following
    return found


async def push_referrers(
    api: RegistryAPI,
    layout: OciLayout,
    repository: Reference,
    subject: Digest,
    *,
    artifact_types: Collection[str] | None,
    progress: Progress,
    jobs: int,
) -> int:
    """Push the layout's referrers of ``subject`` to ``repository`` (the subject is there already); how many the
    target lacked. Where it has no referrers API, the tag schema is merged there."""
    from regtool.client.v2.push import V2Pusher
    from regtool.image.source import BlobStoreSource

    found = await in_thread(layout_referrers, layout, subject, artifact_types)
    pushed = 0
    by_subject: dict[Digest, list[Descriptor]] = {}
    for referrer in found:
        manifest = referrer.manifest
        if referrer.tag is not None:
            destination = repository.with_tag(referrer.tag)
        else:
            destination = Reference(repository.registry, repository.repository, None, manifest.digest)
            by_subject.setdefault(referrer.subject, []).append(
                manifest.descriptor(artifact_type=referrer.artifact_type)
            )
        if not await present_at(api, destination, manifest.digest):
            source = BlobStoreSource(layout.blobs, manifest, description=f"oci:{layout.path}@{manifest.digest}")
            await V2Pusher(api, jobs=jobs, progress=progress).push_source(source, destination)
            pushed += 1
    if by_subject and not await has_referrers_api(api, repository, subject):
        for parent, descriptors in by_subject.items():
            await write_tag_schema(api, repository, parent, descriptors)
    return pushed


async def present_at(api: RegistryAPI, ref: Reference, digest: Digest) -> bool:
    """Whether ``ref`` names ``digest`` at its registry: one HEAD."""
    try:
        response = await api.head_manifest(ref)
    except NotFoundError:
        return False
    return bool(response.headers.get(v2.CONTENT_DIGEST_HEADER) == str(digest))
