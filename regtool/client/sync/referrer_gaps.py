"""Which referrers of an image the target lacks, found without writing: what ``--dry-run`` with
``--referrers-recheck`` lists for a tag that is up to date.

The referrers are found as a real run finds them (``find_referrers`` at a registry: the referrers API, else the
tag schema, plus cosign's tags, recursively; ``layout_referrers`` in a directory's layout) and each is looked
for at the target as a real run looks before copying it: one manifest HEAD at a registry (a cosign referrer by
its tag, the others by digest), index.json at a directory.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from regtool.client.sync.layout_referrers import layout_lacks, layout_referrers, present_at
from regtool.client.threads import in_thread
from regtool.client.v2.api import RegistryAPI
from regtool.client.v2.referrers import find_referrers
from regtool.digest import Digest
from regtool.image.oci_layout import OciLayout
from regtool.reference import Reference

__all__ = ["MissingReferrer", "missing_at_layout", "missing_at_registry"]


@dataclass(frozen=True, slots=True)
class MissingReferrer:
    """A referrer the target lacks: its digest, artifact type and cosign tag (if it has one)."""

    digest: Digest
    artifact_type: str | None
    tag: str | None = None

    def __str__(self) -> str:
        kind = self.tag or self.artifact_type
        return f"{self.digest} ({kind})" if kind else str(self.digest)


@dataclass(frozen=True, slots=True)
class _Found:
    digest: Digest
    artifact_type: str | None
    tag: str | None


async def _found_at_source(
    api: RegistryAPI,
    source: Reference | OciLayout,
    subject: Digest,
    artifact_types: Collection[str] | None,
    source_tags: Collection[str] | None,
) -> list[_Found]:
    if isinstance(source, OciLayout):
        kept = await in_thread(layout_referrers, source, subject, artifact_types)
        return [_Found(r.manifest.digest, r.artifact_type, r.tag) for r in kept]
    found = await find_referrers(api, source, subject, artifact_types=artifact_types, tags=source_tags)
    return [_Found(r.digest, r.artifact_type, r.tag) for r in found]


async def missing_at_registry(
    api: RegistryAPI,
    source: Reference | OciLayout,
    target: Reference,
    subject: Digest,
    *,
    artifact_types: Collection[str] | None,
    source_tags: Collection[str] | None = None,
) -> list[MissingReferrer]:
    """The referrers of ``subject`` at ``source`` (a registry repository or a layout) that ``target``'s repository
    lacks; one HEAD at the target for each referrer found."""
    missing: list[MissingReferrer] = []
    for found in await _found_at_source(api, source, subject, artifact_types, source_tags):
        if found.tag is not None:
            destination = target.with_tag(found.tag)
        else:
            destination = Reference(target.registry, target.repository, None, found.digest)
        if not await present_at(api, destination, found.digest):
            missing.append(MissingReferrer(found.digest, found.artifact_type, found.tag))
    return missing


async def missing_at_layout(
    api: RegistryAPI,
    source: Reference | OciLayout,
    target: OciLayout,
    subject: Digest,
    *,
    artifact_types: Collection[str] | None,
    source_tags: Collection[str] | None = None,
) -> list[MissingReferrer]:
    """The referrers of ``subject`` at ``source`` (a registry repository or a layout) that the layout ``target``
    lacks; the target costs no request."""
    found = await _found_at_source(api, source, subject, artifact_types, source_tags)
    entries = await in_thread(target.entries)
    return [MissingReferrer(f.digest, f.artifact_type, f.tag) for f in found if layout_lacks(entries, f.digest, f.tag)]
