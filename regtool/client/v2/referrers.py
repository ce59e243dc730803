"""What refers to a manifest (signatures, SBOMs, attestations), found and carried between registries.

Finding (``find_referrers``), for a subject manifest's digest in a repository:

1. the OCI 1.1 referrers API, ``GET /v2/<name>/referrers/<digest>`` (``?artifactType=`` when exactly one type is
   wanted; the client filters itself unless ``OCI-Filters-Applied`` says the registry did), every page of it
   (``Link: rel="next"``);
2. where the registry lacks the API (it answered 404, as distribution 2.8.2 does), the tag schema: the tag
   ``sha256-<hex>`` holding an image index whose entries are the referrers' descriptors;
3. always, cosign's tags ``sha256-<hex>.sig`` / ``.att`` / ``.sbom`` (a manifest without a ``subject``, found
   by name only). Their artifact type is the manifest's ``artifactType``, else its first layer's media type
   (cosign's configs are generic, its layers say what they hold: simplesigning, a DSSE envelope, an SPDX
   document).

Then again for each referrer found (a signature of an SBOM), parents before children. ``artifact_types`` keeps
only those types, at every level: a referrer left out is not searched further, so whatever is kept has its
subject kept too.

Carrying (``copy_referrers``), after the subject's manifest is at the target: each referrer manifest absent at
the target is copied (``copy.copy_image``, by digest; a cosign tag keeps its name), and where the target has
no referrers API (its answer to a manifest PUT with a subject carried no ``OCI-Subject``) the referrers are
merged into its ``sha256-<hex>`` tag-schema index (``write_tag_schema``: entries already there are kept).

What a registry showed about its referrers API is remembered in ``RegistryAPI.referrers_api``, so a registry
without it costs one 404, not one per subject. With the repository's tag list given (``tags=``, the sync has it
already), an absent tag-schema or cosign tag costs no request at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from regtool import mediatypes as mt
from regtool.client.progress import Progress
from regtool.client.v2.api import RegistryAPI, json_body
from regtool.client.v2.catalog import list_tags, pages
from regtool.digest import Digest
from regtool.errors import NotFoundError, ProtocolError
from regtool.manifest import Descriptor, Manifest, ManifestError, parse_manifest
from regtool.protocol import v2
from regtool.reference import Reference

if TYPE_CHECKING:
    # Only copy_referrers copies; a sync that finds its tags up to date never loads the copy machinery.
    from regtool.client.v2.copy import CopyResult

__all__ = [
    "COSIGN_SUFFIXES",
    "MAX_DEPTH",
    "Referrer",
    "ReferrerCopy",
    "copy_referrers",
    "cosign_artifact_type",
    "find_referrers",
    "has_referrers_api",
    "is_referrer_tag",
    "remove_from_tag_schema",
    "schema_tag",
    "write_tag_schema",
]

COSIGN_SUFFIXES = ("sig", "att", "sbom")
# Signatures of attestations of SBOMs... real chains are two or three deep; this only stops a cycle's cousins.
MAX_DEPTH = 8
# The spec's tag schema: <alg>-<ref>, where <ref> is the subject's encoded digest cut to 64 characters.
_REF_MAX = 64
_REFERRER_TAG_RE = re.compile(r"^(sha256|sha512)-[0-9a-f]{64}(\.(sig|att|sbom))?$")


def schema_tag(subject: Digest) -> str:
    """The tag-schema tag of ``subject``: ``<alg>-<hex>``, the hex cut to the 64 characters the spec gives it."""
    return f"{subject.algorithm}-{subject.encoded[:_REF_MAX]}"


def is_referrer_tag(tag: str) -> bool:
    """Whether ``tag`` is a tag-schema or cosign tag (``sha256-<hex>[.sig|.att|.sbom]``), not an image's name."""
    return _REFERRER_TAG_RE.match(tag) is not None


@dataclass(frozen=True, slots=True)
class Referrer:
    """A manifest that refers to ``subject``: found ``via`` "api", "tag-schema" or "cosign" (then ``tag`` is
    the cosign tag it was found by, which the target gets too)."""

    subject: Digest
    descriptor: Descriptor
    via: str
    tag: str | None = None

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def artifact_type(self) -> str | None:
        return self.descriptor.artifact_type


@dataclass(frozen=True, slots=True)
class ReferrerCopy:
    """One referrer carried by ``copy_referrers``: ``result`` is None when the target had it already."""

    referrer: Referrer
    result: CopyResult | None


async def find_referrers(
    api: RegistryAPI,
    repository: Reference,
    subject: Digest,
    *,
    artifact_types: Collection[str] | None = None,
    tags: Collection[str] | None = None,
    recursive: bool = True,
) -> list[Referrer]:
    """Every referrer of ``subject`` in ``repository`` (and, ``recursive``, theirs), parents first, each once.

    ``artifact_types`` (None: all) keeps only those; ``tags`` is the repository's tag list when the caller has
    it (otherwise it is listed once, when the tag schema or cosign's tags need it).
    """
    wanted = frozenset(artifact_types) if artifact_types is not None else None
    known_tags: Collection[str] | None = tags
    found: list[Referrer] = []
    seen: set[Digest] = {subject}
    level = [subject]
    for _depth in range(MAX_DEPTH if recursive else 1):
        following: list[Digest] = []
        for parent in level:
            if known_tags is None:
                known_tags = frozenset(await _tags_or_none(api, repository))
            for referrer in await _direct(api, repository, parent, wanted, known_tags):
                if referrer.digest in seen:
                    continue
                seen.add(referrer.digest)
                found.append(referrer)
                following.append(referrer.digest)
        if not following:
            break
        level = following
    return found


async def _tags_or_none(api: RegistryAPI, repository: Reference) -> list[str]:
    try:
        return await list_tags(api, repository)
    except NotFoundError:
        return []


async def _direct(
    api: RegistryAPI,
    repository: Reference,
    subject: Digest,
    wanted: frozenset[str] | None,
    tags: Collection[str],
) -> list[Referrer]:
    """The referrers of ``subject`` itself: the API or else the tag schema, then cosign's tags."""
    listed = await _from_api(api, repository, subject, wanted)
    if listed is None:
        listed = await _from_tag_schema(api, repository, subject, tags)
    found = [r for r in listed if wanted is None or r.artifact_type in wanted]
    for suffix in COSIGN_SUFFIXES:
        tag = f"{schema_tag(subject)}.{suffix}"
        if tag not in tags:
            continue
        manifest = await _manifest_or_none(api, repository.with_tag(tag))
        if manifest is None:
            continue
        descriptor = manifest.descriptor(artifact_type=cosign_artifact_type(manifest))
        if wanted is None or descriptor.artifact_type in wanted:
            found.append(Referrer(subject, descriptor, "cosign", tag))
    return found


async def _from_api(
    api: RegistryAPI, repository: Reference, subject: Digest, wanted: frozenset[str] | None
) -> list[Referrer] | None:
    """The referrers API's list (every page), or None when the registry has no such API (404)."""
    if api.referrers_api.get(repository.registry) is False:
        return None
    only = next(iter(wanted)) if wanted is not None and len(wanted) == 1 else None
    url = await api.url(repository.registry, v2.referrers_path(repository.repository, str(subject), only))
    what = f"referrers of {repository.repository_ref}@{subject}"
    found: list[Referrer] = []
    async for response in pages(api, url, what=what, expect=(200, 404)):
        if response.status_code == 404:
            api.referrers_api[repository.registry] = False
            return None
        api.referrers_api[repository.registry] = True
        filtered = "artifacttype" in response.headers.get(v2.OCI_FILTERS_APPLIED_HEADER, "").lower()
        for descriptor in _index_entries(json_body(response, what), what):
            # A registry that ignored the filter (no OCI-Filters-Applied) is filtered here.
            if only is None or filtered or descriptor.artifact_type == only:
                found.append(Referrer(subject, descriptor, "api"))
    return found


async def _from_tag_schema(
    api: RegistryAPI, repository: Reference, subject: Digest, tags: Collection[str]
) -> list[Referrer]:
    tag = schema_tag(subject)
    if tag not in tags:
        return []
    index = await _manifest_or_none(api, repository.with_tag(tag))
    if index is None:
        return []
    if not index.is_index:
        raise ProtocolError(f"{repository.repository_ref}:{tag}: the tag-schema tag holds a {index.kind}, not an index")
    return [Referrer(subject, descriptor, "tag-schema") for descriptor in index.manifests]


def _index_entries(data: object, what: str) -> list[Descriptor]:
    entries = data.get("manifests") if isinstance(data, dict) else None
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ProtocolError(f"{what}: 'manifests' is not a list")
    try:
        return [Descriptor.from_json(entry, where=f"{what}: entry {i}") for i, entry in enumerate(entries)]
    except ManifestError as exc:
        raise ProtocolError(str(exc)) from None


async def _manifest_or_none(api: RegistryAPI, ref: Reference) -> Manifest | None:
    try:
        return await api.get_manifest(ref)
    except NotFoundError:
        return None


def cosign_artifact_type(manifest: Manifest) -> str | None:
    """The artifact type of a manifest found by a cosign tag: its own, else its first layer's media type."""
    if manifest.artifact_type:
        return manifest.artifact_type
    if manifest.layers:
        return manifest.layers[0].media_type
    return manifest.effective_artifact_type()


async def write_tag_schema(
    api: RegistryAPI, repository: Reference, subject: Digest, descriptors: Sequence[Descriptor]
) -> bool:
    """Merge ``descriptors`` into ``subject``'s tag-schema index in ``repository`` (created when absent; its
    entries are kept, in order, new ones appended). Returns whether it was written (False: nothing new).

    Two writers merging at once can lose one's entries (the registry has no compare-and-swap on tags); the next
    sync of that subject writes them again.
    """
    ref = repository.with_tag(schema_tag(subject))
    current = await _manifest_or_none(api, ref)
    if current is not None and not current.is_index:
        raise ProtocolError(f"{ref}: the tag-schema tag holds a {current.kind}, not an index; left as it is")
    kept = list(current.manifests) if current is not None else []
    present = {d.digest for d in kept}
    added: list[Descriptor] = []
    for descriptor in descriptors:
        if descriptor.digest not in present:
            present.add(descriptor.digest)
            added.append(descriptor)
    if not added:
        return False
    entries = [d.to_json() for d in (*kept, *added)]
    raw = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}).encode()
    await api.put_manifest(ref, parse_manifest(raw, mt.OCI_INDEX))
    return True


async def remove_from_tag_schema(api: RegistryAPI, repository: Reference, subject: Digest, digest: Digest) -> bool:
    """Drop ``digest``'s entry from ``subject``'s tag-schema index in ``repository``, as the spec asks of a client
    deleting a referrer where the registry has no referrers API; False when the index has none."""
    ref = repository.with_tag(schema_tag(subject))
    current = await _manifest_or_none(api, ref)
    if current is None or not current.is_index or digest not in {d.digest for d in current.manifests}:
        return False
    entries = [d.to_json() for d in current.manifests if d.digest != digest]
    raw = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}).encode()
    await api.put_manifest(ref, parse_manifest(raw, mt.OCI_INDEX))
    return True


async def has_referrers_api(api: RegistryAPI, repository: Reference, subject: Digest) -> bool:
    """Whether ``repository``'s registry has the referrers API: what it showed before, else one GET."""
    known = api.referrers_api.get(repository.registry)
    if known is None:
        await _from_api(api, repository, subject, None)
        known = api.referrers_api.get(repository.registry, False)
    return known


async def copy_referrers(
    api: RegistryAPI,
    source: Reference,
    target: Reference,
    subject: Digest,
    *,
    artifact_types: Collection[str] | None = None,
    source_tags: Collection[str] | None = None,
    progress: Progress | None = None,
    jobs: int = 4,
) -> list[ReferrerCopy]:
    """Carry what refers to ``subject`` in ``source``'s repository to ``target``'s (registries; the subject is
    at the target already). Each referrer the target lacks is copied by digest (a cosign one to its tag); the
    rest are left alone. Where the target has no referrers API, the tag schema is merged there.
    """
    from regtool.client.v2.copy import copy_image

    found = await find_referrers(api, source, subject, artifact_types=artifact_types, tags=source_tags)
    copies: list[ReferrerCopy] = []
    for referrer in found:
        destination = target.with_tag(referrer.tag) if referrer.tag else _by_digest(target, referrer.digest)
        result = None
        if not await _has(api, destination, referrer.digest):
            try:
                result = await copy_image(
                    api, _by_digest(source, referrer.digest), destination, progress=progress, jobs=jobs
                )
            except NotFoundError:
                if referrer.via != "tag-schema":
                    raise
                # A tag-schema index keeps entries of manifests deleted since (the registry does not check
                # an index's entries on a delete): such an entry is stale, not the copy's failure.
                if progress is not None:
                    progress.event("stale_referrer", subject=str(referrer.subject), digest=str(referrer.digest))
                continue
        copies.append(ReferrerCopy(referrer, result))
    by_subject: dict[Digest, list[Descriptor]] = {}
    for referrer in (copy.referrer for copy in copies):
        if referrer.via != "cosign":
            by_subject.setdefault(referrer.subject, []).append(referrer.descriptor)
    if by_subject and not await has_referrers_api(api, target, subject):
        for parent, descriptors in by_subject.items():
            await write_tag_schema(api, target, parent, descriptors)
    return copies


async def _has(api: RegistryAPI, ref: Reference, digest: Digest) -> bool:
    """Whether ``ref`` (a tag or a digest) names ``digest`` at its registry: one HEAD."""
    url = await api.url(ref.registry, v2.manifest_path(ref.repository, ref.reference))
    response = await api.send(
        "HEAD", url, what=f"manifest {ref}", headers={"Accept": mt.MANIFEST_ACCEPT}, expect=(200, 404)
    )
    return response.status_code == 200 and response.headers.get(v2.CONTENT_DIGEST_HEADER) == str(digest)


def _by_digest(ref: Reference, digest: Digest) -> Reference:
    """``ref``'s repository at ``digest``, without its tag (a referrer must not take the subject's tag)."""
    return Reference(ref.registry, ref.repository, None, digest)
