"""The sync engine: many repositories and tags from a source to a destination, skipping what is already there.

One run, over one :class:`~regtool.client.Client` (one connection pool, one token cache keyed by registry and
scope, one per-registry cap on blob connections, ``Client.per_registry``):

1. **Expand** every :class:`~regtool.client.sync.plan.SourceSpec`: the catalog (or the directory's layouts) when
   no repository is named, each repository's tag list unless the tags are named, the filters applied. Listings
   run concurrently.
2. **Compare**, per tag and concurrently across tags: one ``HEAD`` at the source and one at the destination, at
   the same time; equal digests mean the tag is up to date (skipped). ``immutable_tags`` skips a tag that the
   destination's tag list has already, without asking the source. With ``platforms``, the source index is read
   and trimmed first, and the trimmed digest is what the destination must have.
3. **Copy** what differs through the client library's own paths: registry -> registry ``copy_image`` (blobs
   streamed and verified, present blobs skipped, blobs another destination repository of this run holds
   mounted), registry -> directory ``V2Puller`` into ``<dir>/<repository>``, directory -> registry ``V2Pusher``,
   directory -> directory ``layout_copy`` (blob by blob through the target's verified, resumable writers).
   Manifests keep their bytes, so digests are kept (a trimmed index aside). Then what refers to the copied
   manifest follows (:meth:`SyncEngine._copy_referrers`, the one place referrers plug in); so does what refers
   to a skipped one when the source's tag list has a tag-schema or cosign tag for it (no request to find out).
   With ``referrers_recheck``, every skipped tag's referrers are also asked for (the referrers API, else the tag
   schema, plus cosign's tags) and the ones the target lacks are copied: a signature attached by the API alone
   to an unchanged image arrives too. That costs requests the HEAD-only comparison does not make: one referrers
   request per tag at a registry source (and one per referrer found, recursively), one HEAD per referrer found
   at a registry target (none at a directory end); each outcome counts the requests it sent
   (``recheck_requests``).
4. **Prune** (``prune``): destination tags of the synced repositories that the source no longer has are deleted
   (referrer tags, ``sha256-<hex>[.sig|.att|.sbom]``, are never pruned: they follow their subject).

``dry_run`` does 1, 2 and the listing of 4 and writes nothing. ``keep_going`` records a failed image and goes
on; otherwise the first failure stops the run and is raised. An interrupted run (Ctrl-C) leaves finished tags
in place and unfinished uploads resumable: the next run skips the former and resumes the latter.

Each finished image is a ``sync`` progress event (its :meth:`ImageOutcome.to_json`); the run starts with a
``sync-plan`` event (how many images) and ends with a ``summary`` event (:meth:`SyncResult.to_json`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from regtool.client.sync.endpoints import (
    DirectoryEndpoint,
    Endpoint,
    RegistryEndpoint,
    join_repository,
    layout_digest,
)
from regtool.client.sync.plan import ImageJob, SourceSpec
from regtool.client.sync.trim import trim_index
from regtool.client.tasks import gather, run_bounded
from regtool.client.threads import in_thread
from regtool.client.v2.referrers import is_referrer_tag, schema_tag
from regtool.digest import Digest
from regtool.errors import IntegrityError, NotFoundError, RegistryError, RegtoolError, UsageError
from regtool.manifest import Manifest, Platform
from regtool.reference import Reference

if TYPE_CHECKING:
    from pathlib import Path

    from regtool.client import Client
    from regtool.client.mirrors import Endpoint as MirrorEndpoint
    from regtool.client.sync.referrer_gaps import MissingReferrer
    from regtool.client.v2.upload import BlobPlace
    from regtool.image.oci_layout import OciLayout

__all__ = ["ImageOutcome", "SyncEngine", "SyncOptions", "SyncResult"]

T = TypeVar("T")

# Tags compared at once for each tag copied at once: a comparison is two HEADs and moves no blob, so on a far
# registry comparing four times as many tags at once saves whole waves of round trips, while the copies (and their
# blob connections, capped per registry) stay at ``SyncOptions.images``.
COMPARES_PER_COPY = 4

# What an image's line says happened.
COPIED, MOUNTED, SKIPPED, FAILED, WOULD_COPY = "copied", "mounted", "skipped", "failed", "would-copy"
PRUNED, WOULD_PRUNE = "pruned", "would-prune"


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """How a sync behaves (see the module docstring). ``images`` is how many tags are compared and copied at once;
    each copy moves up to ``Client.jobs`` blobs, all under the client's per-registry connection cap."""

    platforms: tuple[Platform, ...] = ()
    preserve_digests: bool = False
    immutable_tags: bool = False
    prune: bool = False
    dry_run: bool = False
    keep_going: bool = False
    referrers: bool = True
    artifact_types: tuple[str, ...] = ()
    images: int = 8
    referrers_recheck: bool = False

    def __post_init__(self) -> None:
        if self.images < 1:
            raise UsageError(f"images at once must be at least 1, got {self.images}")
        if self.referrers_recheck and not self.referrers:
            raise UsageError("--referrers-recheck asks for referrers that --no-referrers leaves behind: give one")


@dataclass(frozen=True, slots=True)
class ImageOutcome:
    """What happened to one tag: ``status`` (copied, mounted, skipped, failed, would-copy; pruned, would-prune),
    the digest at the target, and what moved. ``trimmed``: the target's index keeps fewer platforms than the
    source's, so its digest differs from ``source_digest``. For a tag whose referrers were rechecked,
    ``recheck_requests`` is the requests that cost and, in a dry run, ``referrers_missing`` what would be copied."""

    source: str
    target: str
    status: str
    digest: Digest | None = None
    source_digest: Digest | None = None
    bytes: int = 0
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    trimmed: bool = False
    referrers: int = 0
    reason: str | None = None
    error: str | None = None
    exit_code: int | None = None
    recheck_requests: int | None = None
    referrers_missing: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "source": self.source,
            "target": self.target,
            "status": self.status,
            "digest": None if self.digest is None else str(self.digest),
            "source_digest": None if self.source_digest is None else str(self.source_digest),
            "bytes": self.bytes,
            "blobs_copied": self.blobs_copied,
            "blobs_mounted": self.blobs_mounted,
            "blobs_skipped": self.blobs_skipped,
            "trimmed": self.trimmed,
            "referrers": self.referrers,
        }
        if self.reason is not None:
            data["reason"] = self.reason
        if self.recheck_requests is not None:
            data["recheck_requests"] = self.recheck_requests
            data["referrers_missing"] = list(self.referrers_missing)
        if self.error is not None:
            data["error"] = self.error
            data["exit_code"] = self.exit_code
        return data


@dataclass(frozen=True, slots=True)
class SyncResult:
    """A finished (or dry) run: every image's outcome, the pruned tags, the time it took."""

    images: tuple[ImageOutcome, ...]
    pruned: tuple[ImageOutcome, ...]
    seconds: float
    dry_run: bool = False

    @property
    def failures(self) -> tuple[ImageOutcome, ...]:
        return tuple(o for o in (*self.images, *self.pruned) if o.status == FAILED)

    def count(self, status: str) -> int:
        return sum(1 for o in (*self.images, *self.pruned) if o.status == status)

    def to_json(self) -> dict[str, Any]:
        return {
            "images": len(self.images),
            "copied": self.count(COPIED),
            "mounted": self.count(MOUNTED),
            "skipped": self.count(SKIPPED),
            "failed": len(self.failures),
            "would_copy": self.count(WOULD_COPY),
            "pruned": self.count(PRUNED),
            "would_prune": self.count(WOULD_PRUNE),
            "bytes": sum(o.bytes for o in self.images),
            "referrers": sum(o.referrers for o in self.images),
            "referrers_rechecked": sum(1 for o in self.images if o.recheck_requests is not None),
            "recheck_requests": sum(o.recheck_requests or 0 for o in self.images),
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "failures": [o.to_json() for o in self.failures],
        }


@dataclass
class _Moved:
    bytes: int = 0
    copied: int = 0
    mounted: int = 0
    skipped: int = 0


@dataclass
class _Repository:
    """One repository of the run: its source tags (all of them, for prune) and the target's tags when listed."""

    spec: SourceSpec
    source: str
    target: str
    source_tags: list[str] = field(default_factory=list)
    target_tags: dict[str, None] | None = None
    # The subjects (``sha256-<hex>``) that the source's referrer tags name, worked out on first use.
    referrer_subjects: frozenset[str] | None = None


class SyncEngine:
    """Runs a sync to ``target`` over ``client`` (inside its ``async with``)."""

    def __init__(self, client: Client, target: Endpoint, options: SyncOptions | None = None) -> None:
        self.client = client
        self.api = client.api
        self.progress = client.progress
        self.target = target
        self.options = options or SyncOptions()
        # Target repositories that received blobs in this run: a later image's blobs are mounted from there.
        self._filled: list[str] = []
        # Holds the copies to ``options.images`` at once; more tags than that are compared at once.
        self._copying = asyncio.Semaphore(self.options.images)
        # Where each job's image is read from (``job.name`` -> the tag's reference there): the first endpoint,
        # a mirror or the source itself, that answered for its manifest (the Client's read_chain).
        self._read_from: dict[str, Reference] = {}
        # Blobs known to be at the target (found, uploaded or mounted by an earlier copy of this run): images that
        # share layers ask about each shared blob once per run, not once per image.
        self._present: set[BlobPlace] = set()
        # The referrers of each subject carried to each target repository in this run: tags naming one digest
        # share one copy (copying them once per tag at once wrote the same manifests and tag-schema index
        # concurrently, and counted each referrer once per tag).
        self._referrer_copies: dict[tuple[str, Digest], asyncio.Task[int]] = {}

    # -- the run ----------------------------------------------------------------------------------------

    async def run(self, sources: Sequence[SourceSpec]) -> SyncResult:
        if not self.options.referrers_recheck:
            return await self._run(sources)
        from regtool.client.sync.request_count import RequestCounting

        # The client reports each request to its current progress: counted there, per rechecked tag.
        shown = self.client.progress
        self.client.progress = RequestCounting(shown)
        try:
            return await self._run(sources)
        finally:
            self.client.progress = shown

    async def _run(self, sources: Sequence[SourceSpec]) -> SyncResult:
        started = time.monotonic()
        for spec in sources:
            if isinstance(spec.endpoint, DirectoryEndpoint) and isinstance(self.target, DirectoryEndpoint):
                _refuse_overlap(spec.endpoint, self.target)
            if spec.credentials is not None and isinstance(spec.endpoint, RegistryEndpoint):
                # A source's own credentials (a skopeo sync file's), before any given or found for its registry.
                self.client.auth.use_for(spec.endpoint.registry, spec.credentials)
        expanded: list[tuple[list[_Repository], list[ImageOutcome]]] = []

        async def expand() -> None:
            expanded.append(await self._expand(sources))

        await gather([expand(), self._reach_target()])
        repositories, unlisted = expanded[0]
        # One job per target tag, however many sources chose it (a skopeo file may name a repository twice).
        jobs = list(
            {
                (repo.target, tag): ImageJob(repo.spec, repo.source, tag, repo.target)
                for repo in repositories
                for tag in repo.spec.tags.select(repo.source_tags)
            }.values()
        )
        self.progress.event("sync-plan", images=len(jobs), repositories=len(repositories))
        if isinstance(self.target, DirectoryEndpoint) and not self.options.dry_run:
            # Made before the copies start, so that no pull sees a layout it created (and would remove on failure)
            # while others fill it.
            target = self.target
            for name in sorted({job.target_repository for job in jobs}):
                await in_thread(functools.partial(target.open_layout, name, create=True))
        outcomes: list[ImageOutcome] = list(unlisted)
        known = {repo.target: repo for repo in repositories}

        async def one(job: ImageJob) -> None:
            outcome = await self._guarded(job.name, self._target_name(job), lambda: self._sync(job, known))
            outcomes.append(outcome)

        await run_bounded(jobs, one, self.options.images * COMPARES_PER_COPY)
        pruned: list[ImageOutcome] = []
        if self.options.prune:
            pruned = await self._prune(repositories)
        result = SyncResult(tuple(outcomes), tuple(pruned), time.monotonic() - started, self.options.dry_run)
        self.progress.event("summary", **result.to_json())
        return result

    async def _guarded(self, source: str, target: str, work: Callable[[], Awaitable[ImageOutcome]]) -> ImageOutcome:
        """``work``'s outcome, reported; a failure is an outcome under ``keep_going``, else raised."""
        try:
            outcome = await work()
        except RegtoolError as exc:
            outcome = ImageOutcome(source, target, FAILED, error=str(exc), exit_code=exc.exit_code)
            self.progress.event("sync", **outcome.to_json())
            if not self.options.keep_going:
                raise
            return outcome
        self.progress.event("sync", **outcome.to_json())
        return outcome

    # -- expanding the sources ----------------------------------------------------------------------------

    async def _expand(self, sources: Sequence[SourceSpec]) -> tuple[list[_Repository], list[ImageOutcome]]:
        """The repositories to sync with their source tags; under ``keep_going`` a source or repository that could
        not be listed is a failure of its own and the rest go on."""
        failed: list[ImageOutcome] = []

        async def listing(name: str, target: str, work: Callable[[], Awaitable[T]], empty: T) -> T:
            try:
                return await work()
            except RegtoolError as exc:
                outcome = ImageOutcome(name, target, FAILED, error=str(exc), exit_code=exc.exit_code)
                self.progress.event("sync", **outcome.to_json())
                if not self.options.keep_going:
                    raise
                failed.append(outcome)
                return empty

        async def repositories_of(spec: SourceSpec) -> list[str]:
            return await listing(_source_name(spec), str(self.target), lambda: self._repositories(spec), [])

        named: list[tuple[SourceSpec, str]] = []
        for spec, names in zip(sources, await gather([repositories_of(s) for s in sources]), strict=True):
            named.extend((spec, name) for name in names)
        repositories = [_Repository(spec, name, self._target_repository(spec, name)) for spec, name in named]
        seen: dict[str, str] = {}
        for repo in repositories:
            origin = f"{repo.spec.endpoint}/{repo.source}"
            if seen.setdefault(repo.target, origin) != origin:
                raise UsageError(f"{seen[repo.target]} and {origin} would both be synced to {repo.target}")

        async def tags(repo: _Repository) -> None:
            if self.options.immutable_tags or self.options.prune:
                # The target's tags are listed beside the source's, not in a round of their own after them.
                await gather([source_tags(repo), self._list_target_tags(repo)])
            else:
                await source_tags(repo)

        async def source_tags(repo: _Repository) -> None:
            names = repo.spec.tags.names
            if names is not None and not self.options.prune:
                repo.source_tags = list(names)
                return
            endpoint = repo.spec.endpoint
            if isinstance(endpoint, RegistryEndpoint):
                name = f"{endpoint.registry}/{repo.source}"
            else:
                name = str(endpoint.layout_path(repo.source))
            target = self.target
            if isinstance(target, RegistryEndpoint):
                target_name = f"{target.registry}/{repo.target}"
            else:
                target_name = str(target.layout_path(repo.target))
            listed = await listing(name, target_name, lambda: self._source_tags(endpoint, repo.source), None)
            if listed is None:
                repositories.remove(repo)
            else:
                repo.source_tags = listed

        await run_bounded(list(repositories), tags, self.options.images)
        return repositories, failed

    async def _repositories(self, spec: SourceSpec) -> list[str]:
        endpoint = spec.endpoint
        if spec.repository is not None:
            return [spec.repository]
        if isinstance(endpoint, RegistryEndpoint) and endpoint.path:
            return [endpoint.path]
        if isinstance(endpoint, DirectoryEndpoint):
            names = await in_thread(endpoint.repositories)
        else:
            from regtool.client.v2.catalog import list_repositories

            names = await list_repositories(self.api, endpoint.registry)
        if spec.repos is not None:
            names = [name for name in names if spec.repos.fullmatch(name)]
        return names

    async def _source_tags(self, endpoint: Endpoint, repository: str) -> list[str]:
        if isinstance(endpoint, DirectoryEndpoint):
            return list((await in_thread(endpoint.tags, repository)).keys())
        from regtool.client.v2.catalog import list_tags

        where = endpoint.reference(repository)
        if self.options.prune:
            # What the target loses is judged by the source's own list: a mirror's may lag behind it.
            return await list_tags(self.api, where)
        return await self.client.read_chain(where).first(f"tags of {where}", lambda at: list_tags(self.api, at.ref))

    def _target_repository(self, spec: SourceSpec, source_repository: str) -> str:
        prefix = self.target.path if isinstance(self.target, RegistryEndpoint) else ""
        return join_repository(prefix, source_repository)

    def _target_name(self, job: ImageJob) -> str:
        if isinstance(self.target, DirectoryEndpoint):
            return f"{self.target.layout_path(job.target_repository)}:{job.tag}"
        return f"{self.target.registry}/{job.target_repository}:{job.tag}"

    async def _list_target_tags(self, repo: _Repository) -> None:
        target = self.target
        if isinstance(target, DirectoryEndpoint):
            tags = await in_thread(target.tags, repo.target)
            repo.target_tags = dict.fromkeys(tags)
            return
        from regtool.client.v2.catalog import list_tags

        try:
            repo.target_tags = dict.fromkeys(await list_tags(self.api, target.reference(repo.target)))
        except NotFoundError:
            repo.target_tags = {}

    async def _reach_target(self) -> None:
        """Find where the target registry answers (its ``/v2/``) while the sources are listed, instead of in the
        first comparisons after them. A failure is left for the target's own requests to report."""
        if isinstance(self.target, RegistryEndpoint):
            with contextlib.suppress(RegtoolError):
                await self.api.base_url(self.target.registry)

    # -- one image ----------------------------------------------------------------------------------------

    async def _sync(self, job: ImageJob, known: dict[str, _Repository]) -> ImageOutcome:
        source_name, target_name = job.name, self._target_name(job)
        repo = known.get(job.target_repository)
        if self.options.immutable_tags and repo is not None and repo.target_tags is not None:
            if job.tag in repo.target_tags:
                kept = ImageOutcome(source_name, target_name, SKIPPED, reason="immutable tag present")
                if not self.options.referrers_recheck or self.options.platforms:
                    return kept
                # SOURCE is not asked about the tag: the target's digest names the image whose referrers are
                # rechecked (unless --platform trimmed it, when they refer to another digest).
                digest = await self._target_digest(job)
                if digest is None:
                    return kept
                return await self._recheck_referrers(replace(kept, digest=digest), job, digest, repo)
        source_digest, target_digest = await gather([self._source_digest(job), self._target_digest(job)])
        assert source_digest is not None
        wanted: Manifest | None = None
        expected = source_digest
        if self.options.platforms:
            root = await self._source_manifest(job, source_digest)
            wanted = trim_index(root, self.options.platforms, where=f"index {source_name}")
            if wanted.digest != root.digest and self.options.preserve_digests:
                raise UsageError(
                    f"{source_name}: copying only {', '.join(map(str, self.options.platforms))} changes the index's "
                    f"digest ({root.digest} -> {wanted.digest}); --preserve-digests refuses that"
                )
            expected = wanted.digest
        base = ImageOutcome(
            source_name,
            target_name,
            SKIPPED,
            digest=expected,
            source_digest=source_digest,
            trimmed=expected != source_digest,
        )
        if target_digest == expected:
            skipped = replace(base, reason="up to date")
            if base.trimmed:
                return skipped
            if self.options.referrers_recheck:
                return await self._recheck_referrers(skipped, job, source_digest, repo)
            referrers = 0
            if not self.options.dry_run and await self._shows_referrers(job, repo, source_digest):
                # A signature added since the last run shows as a new tag at the source: it follows, and the
                # image, unchanged, is not copied again.
                referrers = await self._copy_referrers(job, source_digest, repo)
            return replace(skipped, referrers=referrers)
        if self.options.dry_run:
            return replace(base, status=WOULD_COPY)
        async with self._copying:
            moved = await self._copy(job, source_digest, wanted if base.trimmed else None)
            self._remember_filled(job.target_repository)
            referrers = 0 if base.trimmed else await self._copy_referrers(job, source_digest, repo)
        return replace(
            base,
            status=MOUNTED if moved.mounted and not moved.copied else COPIED,
            bytes=moved.bytes,
            blobs_copied=moved.copied,
            blobs_mounted=moved.mounted,
            blobs_skipped=moved.skipped,
            referrers=referrers,
        )

    async def _recheck_referrers(
        self, skipped: ImageOutcome, job: ImageJob, source_digest: Digest, repo: _Repository | None
    ) -> ImageOutcome:
        """An up-to-date tag's referrers asked for at the source; those the target lacks copied (listed in a dry
        run), with the requests that cost."""
        from regtool.client.sync.request_count import counting

        with counting() as count:
            if self.options.dry_run:
                missing = await self._missing_referrers(job, source_digest, repo)
                return replace(skipped, recheck_requests=count.requests, referrers_missing=tuple(map(str, missing)))
            copied = await self._copy_referrers(job, source_digest, repo)
        return replace(skipped, referrers=copied, recheck_requests=count.requests)

    async def _missing_referrers(
        self, job: ImageJob, source_digest: Digest, repo: _Repository | None
    ) -> list[MissingReferrer]:
        """What ``_copy_referrers`` would copy for the tag, found without writing."""
        from regtool.client.sync.referrer_gaps import missing_at_layout, missing_at_registry

        source, target = job.spec.endpoint, self.target
        artifact_types = self.options.artifact_types or None
        read: Reference | OciLayout
        if isinstance(source, DirectoryEndpoint):
            read = await in_thread(source.open_layout, job.source_repository)
        else:
            read = self._source_reference(job, source)
        tags = self._listed_source_tags(job, repo)
        if isinstance(target, DirectoryEndpoint):
            layout = await in_thread(target.open_layout, job.target_repository)
            return await missing_at_layout(
                self.api, read, layout, source_digest, artifact_types=artifact_types, source_tags=tags
            )
        return await missing_at_registry(
            self.api,
            read,
            target.reference(job.target_repository, job.tag),
            source_digest,
            artifact_types=artifact_types,
            source_tags=tags,
        )

    def _listed_source_tags(self, job: ImageJob, repo: _Repository | None) -> list[str] | None:
        """The source repository's whole tag list when the run listed it (not when the tags were named)."""
        listed = repo is not None and (job.spec.tags.names is None or self.options.prune)
        return repo.source_tags if listed and repo is not None else None

    async def _source_digest(self, job: ImageJob) -> Digest:
        endpoint = job.spec.endpoint
        if isinstance(endpoint, DirectoryEndpoint):
            found = await in_thread(layout_digest, endpoint, job.source_repository, job.tag)
            if found is None:
                raise NotFoundError(f"no tag {job.tag!r} in {endpoint.layout_path(job.source_repository)}")
            return found
        from regtool.client.v2.inspect import resolve_digest

        async def at(read: MirrorEndpoint) -> tuple[Reference, Digest]:
            return read.ref, await resolve_digest(self.api, read.ref)

        tagged = endpoint.reference(job.source_repository, job.tag)
        where, digest = await self.client.read_chain(tagged).first(f"manifest {tagged}", at)
        # The image is then read where its manifest was found (as a copy does).
        self._read_from[job.name] = where
        return digest

    def _source_reference(self, job: ImageJob, source: RegistryEndpoint) -> Reference:
        """The tag's reference where the job reads it: a mirror's, or the source's own."""
        return self._read_from.get(job.name) or source.reference(job.source_repository, job.tag)

    async def _target_digest(self, job: ImageJob) -> Digest | None:
        target = self.target
        if isinstance(target, DirectoryEndpoint):
            return await in_thread(layout_digest, target, job.target_repository, job.tag)
        from regtool.client.v2.inspect import resolve_digest

        try:
            return await resolve_digest(self.api, target.reference(job.target_repository, job.tag))
        except NotFoundError:
            return None

    async def _source_manifest(self, job: ImageJob, digest: Digest) -> Manifest:
        endpoint = job.spec.endpoint
        if isinstance(endpoint, DirectoryEndpoint):
            layout = await in_thread(endpoint.open_layout, job.source_repository)
            return await in_thread(layout.manifest, digest)
        return await self.api.get_manifest(self._source_reference(job, endpoint).with_digest(digest))

    def _remember_filled(self, repository: str) -> None:
        if repository not in self._filled:
            self._filled.append(repository)

    def _mount_candidates(self, repository: str) -> tuple[str, ...]:
        # One candidate: a mount that fails opens an upload session anyway, so a second would never be tried.
        others = [name for name in self._filled if name != repository]
        return (others[0],) if others else ()

    # -- copying ----------------------------------------------------------------------------------------

    async def _copy(self, job: ImageJob, digest: Digest, trimmed: Manifest | None) -> _Moved:
        """Copy the tag's manifest ``digest`` (or, when ``trimmed``, its kept children and the trimmed index)."""
        source, target = job.spec.endpoint, self.target
        moved = _Moved()
        if isinstance(source, RegistryEndpoint) and isinstance(target, RegistryEndpoint):
            src = self._source_reference(job, source).with_digest(digest)
            dst = target.reference(job.target_repository, job.tag)
            if trimmed is None:
                await self._registry_to_registry(src, dst, moved)
            else:
                for child in trimmed.manifests:
                    await self._registry_to_registry(
                        src.with_digest(child.digest),
                        Reference(dst.registry, dst.repository, None, child.digest),
                        moved,
                    )
                await self.api.put_manifest(dst, trimmed)
        elif isinstance(source, RegistryEndpoint) and isinstance(target, DirectoryEndpoint):
            # Named as the source names it; the pull reads through the mirrors itself.
            src = source.reference(job.source_repository, job.tag).with_digest(digest)
            path = target.layout_path(job.target_repository)
            if trimmed is None:
                await self._registry_to_directory(src, path, moved)
            else:
                for child in trimmed.manifests:
                    await self._registry_to_directory(
                        Reference(src.registry, src.repository, None, child.digest), path, moved
                    )
                layout = await in_thread(target.open_layout, job.target_repository)
                await in_thread(layout.blobs.put_bytes, trimmed.digest, trimmed.raw)
                await in_thread(
                    lambda: layout.add_manifest(trimmed.descriptor(), ref_name=job.tag, image_name=str(src))
                )
        elif isinstance(source, DirectoryEndpoint) and isinstance(target, RegistryEndpoint):
            layout = await in_thread(source.open_layout, job.source_repository)
            dst = target.reference(job.target_repository, job.tag)
            roots = [await in_thread(layout.manifest, digest)]
            if trimmed is not None:
                roots = [await in_thread(layout.manifest, child.digest) for child in trimmed.manifests]
            for root in roots:
                ref = dst if trimmed is None else Reference(dst.registry, dst.repository, None, root.digest)
                await self._directory_to_registry(layout, root, job, ref, moved)
            if trimmed is not None:
                await self.api.put_manifest(dst, trimmed)
        else:
            assert isinstance(source, DirectoryEndpoint) and isinstance(target, DirectoryEndpoint)
            await self._directory_to_directory(source, target, job, digest, trimmed, moved)
        return moved

    async def _registry_to_registry(self, source: Reference, target: Reference, moved: _Moved) -> None:
        from regtool.client.v2.copy import copy_image

        result = await copy_image(
            self.api,
            source,
            target,
            progress=self.progress,
            jobs=self.client.jobs,
            mount_from=self._mount_candidates(target.repository),
            known_present=self._present,
        )
        moved.bytes += result.bytes_copied
        moved.copied += result.blobs_copied
        moved.mounted += result.blobs_mounted
        moved.skipped += result.blobs_skipped

    async def _registry_to_directory(self, source: Reference, path: Path, moved: _Moved) -> None:
        from regtool.client.v2.pull import V2Puller

        puller = V2Puller(self.api, jobs=self.client.jobs, progress=self.progress, split=self.client.split)
        result = await puller.pull(source, path, format="oci", all_platforms=True, chain=self.client.read_chain(source))
        moved.bytes += result.bytes_downloaded
        moved.copied += result.blobs_downloaded
        moved.skipped += result.blobs_skipped

    async def _directory_to_registry(
        self, layout: OciLayout, root: Manifest, job: ImageJob, target: Reference, moved: _Moved
    ) -> None:
        from regtool.client.v2.push import V2Pusher
        from regtool.image.source import BlobStoreSource

        source = BlobStoreSource(layout.blobs, root, description=f"oci:{layout.path}:{job.tag}", ref_name=job.tag)
        pusher = V2Pusher(self.api, jobs=self.client.jobs, progress=self.progress)
        result = await pusher.push_source(source, target, mount_from=self._mount_candidates(target.repository))
        moved.bytes += result.bytes_uploaded
        moved.copied += result.blobs_uploaded
        moved.mounted += result.blobs_mounted
        moved.skipped += result.blobs_skipped

    async def _directory_to_directory(
        self,
        source: DirectoryEndpoint,
        target: DirectoryEndpoint,
        job: ImageJob,
        digest: Digest,
        trimmed: Manifest | None,
        moved: _Moved,
    ) -> None:
        """One tag between layouts: the image's tree (a trimmed index: the children it keeps, read from the source,
        and the trimmed index itself) copied blob by blob, verified, and tagged last."""
        from regtool.client.sync.layout_copy import copy_layout_image

        src, dst = await gather(
            [
                in_thread(source.open_layout, job.source_repository),
                in_thread(target.open_layout, job.target_repository),
            ]
        )
        root = trimmed if trimmed is not None else await in_thread(src.manifest, digest)
        copied = await copy_layout_image(
            src, dst, root, ref_name=job.tag, progress=self.progress, jobs=self.client.jobs
        )
        moved.bytes += copied.bytes
        moved.copied += copied.copied
        moved.skipped += copied.skipped

    async def _copy_referrers(self, job: ImageJob, source_digest: Digest, repo: _Repository | None) -> int:
        """Carry what refers to the copied manifest (signatures, SBOMs, attestations, recursively) to the target;
        how many referrers the target lacked, counted for the first tag of the digest (the others wait for that
        one copy and count none). The one place referrers plug into a sync: between registries
        (``copy_referrers``), into and out of a directory's layout (layout_referrers.py); never for a trimmed
        index, whose digest at the target is not the one they refer to."""
        if not self.options.referrers:
            return 0
        key = (job.target_repository, source_digest)
        running = self._referrer_copies.get(key)
        if running is not None:
            await running
            return 0
        running = asyncio.ensure_future(self._copy_referrers_of(job, source_digest, repo))
        self._referrer_copies[key] = running
        return await running

    async def _copy_referrers_of(self, job: ImageJob, source_digest: Digest, repo: _Repository | None) -> int:
        source, target = job.spec.endpoint, self.target
        artifact_types = self.options.artifact_types or None
        source_tags = self._listed_source_tags(job, repo)
        if isinstance(source, DirectoryEndpoint):
            layout = await in_thread(source.open_layout, job.source_repository)
            if isinstance(target, DirectoryEndpoint):
                from regtool.client.sync.layout_copy import copy_layout_referrers

                into = await in_thread(target.open_layout, job.target_repository)
                return await copy_layout_referrers(
                    layout,
                    into,
                    source_digest,
                    artifact_types=artifact_types,
                    progress=self.progress,
                    jobs=self.client.jobs,
                )
            from regtool.client.sync.layout_referrers import push_referrers

            return await push_referrers(
                self.api,
                layout,
                target.reference(job.target_repository),
                source_digest,
                artifact_types=artifact_types,
                progress=self.progress,
                jobs=self.client.jobs,
            )
        # Asked where the image was read: with mirrors, the source itself may be down.
        read_from = self._source_reference(job, source)
        if isinstance(target, DirectoryEndpoint):
            from regtool.client.sync.layout_referrers import pull_referrers

            return await pull_referrers(
                self.api,
                read_from,
                target.layout_path(job.target_repository),
                source_digest,
                artifact_types=artifact_types,
                tags=source_tags,
                progress=self.progress,
                jobs=self.client.jobs,
                split=self.client.split,
            )
        from regtool.client.v2.referrers import copy_referrers

        copies = await copy_referrers(
            self.api,
            read_from,
            target.reference(job.target_repository, job.tag),
            source_digest,
            artifact_types=artifact_types,
            source_tags=source_tags,
            progress=self.progress,
            jobs=self.client.jobs,
        )
        return sum(1 for c in copies if c.result is not None)

    # -- prune ------------------------------------------------------------------------------------------

    async def _prune(self, repositories: list[_Repository]) -> list[ImageOutcome]:
        # Only tags the run's filters take: a target tag none of them selects is someone else's, and stays.
        doomed: dict[tuple[str, str], tuple[_Repository, str]] = {}
        for repo in repositories:
            present = set(repo.source_tags)
            for tag in repo.spec.tags.select([t for t in repo.target_tags or {} if t not in present]):
                doomed[repo.target, tag] = (repo, tag)
        doomed_in: dict[str, frozenset[str]] = {}
        for target, tag in doomed:
            doomed_in[target] = doomed_in.get(target, frozenset()) | {tag}
        outcomes: list[ImageOutcome] = []

        async def one(item: tuple[_Repository, str]) -> None:
            repo, tag = item
            job = ImageJob(repo.spec, repo.source, tag, repo.target)
            outcome = await self._guarded(
                job.name, self._target_name(job), lambda: self._prune_one(repo, tag, doomed_in[repo.target])
            )
            outcomes.append(outcome)

        await run_bounded(doomed.values(), one, self.options.images)
        return sorted(outcomes, key=lambda o: o.target)

    async def _prune_one(self, repo: _Repository, tag: str, doomed: frozenset[str]) -> ImageOutcome:
        job = ImageJob(repo.spec, repo.source, tag, repo.target)
        name = self._target_name(job)
        digest = await self._target_digest(job)
        if self.options.dry_run:
            return ImageOutcome(job.name, name, WOULD_PRUNE, digest=digest, reason="gone at the source")
        target = self.target
        if isinstance(target, DirectoryEndpoint):
            layout = await in_thread(target.open_layout, repo.target)
            await in_thread(layout.remove_ref, tag)
        elif digest is not None:  # None: gone already (with another doomed tag's manifest)
            await self._delete_tag(target.reference(repo.target, tag), doomed)
        return ImageOutcome(job.name, name, PRUNED, digest=digest, reason="gone at the source")

    async def _delete_tag(self, ref: Reference, doomed: frozenset[str]) -> None:
        """DELETE the tag itself (OCI 1.1); where the registry refuses that (distribution 2.x deletes only by
        digest), delete the manifest by digest, unless a tag that stays names it too: any tag the target has now
        (this run's copies included) but the ``doomed`` ones. A manifest gone meanwhile (deleted with another
        doomed tag's) is pruned already."""
        from regtool.client.v2.catalog import list_tags
        from regtool.client.v2.inspect import delete_manifest, resolve_digest
        from regtool.protocol import v2

        url = await self.api.url(ref.registry, v2.manifest_path(ref.repository, ref.reference))
        try:
            await self.api.send("DELETE", url, what=f"delete of {ref}", expect=(200, 202, 204))
            return
        except NotFoundError:
            return
        except IntegrityError:
            # distribution 2.x reads the reference as a digest: DIGEST_INVALID (a DELETE sends no bytes to check).
            pass
        except RegistryError as exc:
            if exc.status not in {400, 405} and "UNSUPPORTED" not in exc.codes:
                raise
        try:
            digest = await resolve_digest(self.api, ref)
            staying = [t for t in await list_tags(self.api, ref) if t not in doomed]
            shared = await gather([self._digest_or_none(ref.with_tag(t)) for t in staying])
            if digest in shared:
                raise RegistryError(
                    f"cannot prune {ref}: the registry deletes only by digest, and {digest} is also tagged "
                    f"{', '.join(t for t, d in zip(staying, shared, strict=True) if d == digest)}"
                )
            await delete_manifest(self.api, ref.with_digest(digest))
        except NotFoundError:
            return

    async def _shows_referrers(self, job: ImageJob, repo: _Repository | None, subject: Digest) -> bool:
        """Whether the source shows referrers of ``subject`` without being asked for them: a tag-schema or cosign
        tag in a registry's tag list; in a directory, an entry of the layout naming it as its subject. So a
        signature added since the last run follows its unchanged image, out of a registry or a directory alike."""
        if repo is None:
            return False
        if repo.referrer_subjects is None:
            endpoint = job.spec.endpoint
            if isinstance(endpoint, DirectoryEndpoint):
                repository = job.source_repository
                repo.referrer_subjects = await in_thread(
                    lambda: _layout_referrer_subjects(endpoint.open_layout(repository))
                )
            else:
                tags = repo.source_tags
                repo.referrer_subjects = frozenset(tag.partition(".")[0] for tag in tags if is_referrer_tag(tag))
        return schema_tag(subject) in repo.referrer_subjects

    async def _digest_or_none(self, ref: Reference) -> Digest | None:
        from regtool.client.v2.inspect import resolve_digest

        try:
            return await resolve_digest(self.api, ref)
        except NotFoundError:
            return None


def _layout_referrer_subjects(layout: OciLayout) -> frozenset[str]:
    """The subjects (``sha256-<hex>``) of what a layout keeps as referrers: its untagged entries that name a
    subject, and its cosign tags (reads the untagged manifests: call in a thread)."""
    from regtool.image.oci_layout import REF_NAME_ANNOTATION

    subjects: set[str] = set()
    for entry in layout.entries():
        name = entry.annotations.get(REF_NAME_ANNOTATION)
        if name is None:
            subject = layout.manifest(entry).subject
            if subject is not None:
                subjects.add(schema_tag(subject.digest))
        elif is_referrer_tag(name):
            subjects.add(name.partition(".")[0])
    return frozenset(subjects)


def _refuse_overlap(source: DirectoryEndpoint, target: DirectoryEndpoint) -> None:
    """A directory synced into itself, or into a directory inside the other, would find its own copies as
    repositories on the next run: refused."""
    here, there = source.root.resolve(), target.root.resolve()
    if here == there or here in there.parents or there in here.parents:
        raise UsageError(f"{source} -> {target}: one directory is inside the other; give two separate directories")


def _source_name(spec: SourceSpec) -> str:
    endpoint = spec.endpoint
    if spec.repository is not None and isinstance(endpoint, RegistryEndpoint):
        return f"{endpoint.registry}/{spec.repository}"
    return str(endpoint)
