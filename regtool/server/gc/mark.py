"""The mark phase: which manifests, repository links and blobs are live.

Live manifests of a repository, from its roots:

- every tagged manifest;
- every manifest whose revision was written within the grace period (a push in progress may tag it next);
- without ``delete_untagged``, every untagged manifest that is not a referrer (distribution keeps them too);
- the children of a live index, and the referrers of a live manifest (a manifest whose ``subject`` is live).

A live manifest keeps its own blob, its config and its layers, both as blobs and as links in its repository.
A link written within the grace period keeps itself and its blob (a blob pushed before its manifest). Blobs that
live v1 images (``v1.py``) or the pull-through cache use are live whatever the repositories say.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from regtool.digest import Digest
from regtool.manifest import Manifest, ManifestError, parse_manifest
from regtool.server.gc.inventory import RepositoryInventory
from regtool.server.storage.driver import PathNotFound
from regtool.server.storage.registry import BlobStore

__all__ = ["LiveSet", "ManifestReader", "References", "mark", "mark_repository"]


@dataclass
class LiveSet:
    manifests: dict[str, set[Digest]] = field(default_factory=lambda: defaultdict(set))
    links: dict[str, set[Digest]] = field(default_factory=lambda: defaultdict(set))
    blobs: set[Digest] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class References:
    """What a manifest names: its blobs (config and layers; foreign layers too, in case they are stored), the
    manifests of an index, its subject."""

    blobs: tuple[Digest, ...]
    children: tuple[Digest, ...]
    subject: Digest | None

    @classmethod
    def of(cls, manifest: Manifest) -> References:
        blobs = dict.fromkeys((*manifest.referenced_blobs(), *(layer.digest for layer in manifest.layers)))
        subject = manifest.subject.digest if manifest.subject is not None else None
        return cls(tuple(blobs), tuple(child.digest for child in manifest.manifests), subject)


class ManifestReader:
    """The references of manifests by digest, each manifest read and parsed once per run (a digest names the same
    bytes in every mark); only the references are kept, not the bytes."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._known: dict[Digest, References] = {}

    def __call__(self, digest: Digest, media_type: str) -> References | None:
        # A manifest that cannot be read keeps what the tags and grace say about it, and names nothing else. It
        # is not remembered: it may be readable by the next mark.
        known = self._known.get(digest)
        if known is None:
            try:
                known = self._known[digest] = References.of(parse_manifest(self.blobs.get(digest), media_type))
            except (PathNotFound, ManifestError):
                return None
        return known


def mark_repository(
    read: ManifestReader, repository: RepositoryInventory, live: LiveSet, *, delete_untagged: bool, cutoff: float
) -> None:
    """Add what is live in ``repository`` to ``live`` (marking a repository again adds what it gained since)."""
    name = repository.name
    parsed = {digest: read(digest, rev.media_type) for digest, rev in repository.revisions.items()}
    referrers: defaultdict[Digest, list[Digest]] = defaultdict(list)
    for digest, references in parsed.items():
        if references is not None and references.subject is not None:
            referrers[references.subject].append(digest)
    pending = list(repository.tags.values())
    for digest, revision in repository.revisions.items():
        references = parsed[digest]
        is_referrer = references is not None and references.subject is not None
        if revision.modified > cutoff or (not delete_untagged and not is_referrer):
            pending.append(digest)
    for digest, modified in repository.links.items():
        if modified > cutoff:
            live.links[name].add(digest)
            live.blobs.add(digest)
    seen = live.manifests[name]
    while pending:
        digest = pending.pop()
        if digest in seen:
            continue
        seen.add(digest)
        live.links[name].add(digest)
        live.blobs.add(digest)
        references = parsed.get(digest)
        if references is not None:
            live.links[name].update(references.blobs)
            live.blobs.update(references.blobs)
            pending.extend(references.children)
        # A tag may name a manifest the repository lacks: its blob stays, nothing more is known.
        pending.extend(referrers.get(digest, ()))


def mark(
    read: ManifestReader,
    repositories: Iterable[RepositoryInventory],
    *,
    delete_untagged: bool,
    cutoff: float,
    also_live: Iterable[Digest] = (),
) -> LiveSet:
    """The live set of ``repositories``; ``cutoff`` is the time before which nothing counts as recent."""
    live = LiveSet()
    for repository in repositories:
        mark_repository(read, repository, live, delete_untagged=delete_untagged, cutoff=cutoff)
    live.blobs.update(also_live)
    return live
