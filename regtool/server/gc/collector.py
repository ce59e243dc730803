"""``collect_garbage``: mark what is live, then sweep the rest in an order that makes a crash harmless.

The sweep runs in phases, each against a fresh mark of the store as it is then:

1. unreachable manifest revisions (and their referrers entries);
2. repository links nothing live names, referrers entries whose manifest is gone, v1 images no v1 tag reaches
   (``v1.py``) and v1 repositories a push never tagged (``v1repositories.py``), repositories left empty;
3. blob data, last, and upload sessions (v2, and v1 layer uploads: ``v1uploads.py``) idle for longer than the
   grace period.

References go before the data they name, so at every instant each live manifest still has its blobs and links:
a run killed anywhere leaves a store that serves every live image, whose leftovers (a blob whose last link went,
a link whose manifest went) are exactly what the next run's mark finds unreachable and removes. Nothing younger
than the grace period (``delay``) is removed, and each candidate's time is read again just before it goes, so
content pushed while the collector runs (a blob whose manifest is not pushed yet, a manifest tagged since the
mark) stays. Marking again before each phase extends that to what became reachable during the previous phase.

A push may also re-use content the mark found unreachable, and each way it can leaves a trace the re-check
reads, on every driver:

- a manifest written into a repository (naming blobs the repository has linked, unreferenced, for longer than
  the grace period, or untagged manifests as an index's children) replaces the repository's write token
  (``_manifests/written``, once per manifest); before each removal of one of its manifests or links the token is
  read again, and when it changed the repository is marked again, so the new manifest's content stays; a link
  swept while the manifest was being written (its token not yet replaced at the re-check) is found missing by
  the put itself once its token is in place, and made again (``Registry.put_manifest``);
- the same bytes uploaded again, or a blob mounted, marks the blob as used (``BlobStore.mark_used``, a small
  file beside the data whose content is the time), read again before the blob's removal.

What remains is the instant between a removal's re-check and the removal itself (a read and a delete, not a
phase): a re-use landing exactly there can still lose a link or a blob. distribution avoids it by requiring a
read-only registry for its whole run; here no push is refused.

Deletes go through the registry store (``Registry.unlink_blob``, ``BlobStore.delete``) or, for revisions, through
:func:`forget_manifest`, so a descriptor cache in front of the store forgets what is removed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from regtool.digest import Digest
from regtool.server.errors import ApiError
from regtool.server.gc.inventory import (
    RepositoryInventory,
    blob_directories,
    children,
    manifests_token,
    read_repository,
    revision_dir,
    uploading_repositories,
)
from regtool.server.gc.mark import LiveSet, ManifestReader, mark, mark_repository
from regtool.server.gc.report import GcReport, Removal
from regtool.server.gc.v1 import V1Mark, mark_v1, sweep_v1_images
from regtool.server.gc.v1repositories import sweep_v1_repositories
from regtool.server.gc.v1uploads import sweep_v1_uploads
from regtool.server.proxy.limits import read_records
from regtool.server.purge import idle_uploads
from regtool.server.storage import paths
from regtool.server.storage.driver import ObjectStoreDriver, PathNotFound, exists
from regtool.server.storage.registry import Registry

__all__ = ["DEFAULT_DELAY", "GcOptions", "Phase", "collect_garbage", "forget_manifest"]

logger = logging.getLogger("regtool.server.gc")

DEFAULT_DELAY = 3600.0
_REPOSITORY_PARTS = ("_manifests", "_layers", "_referrers")

# Each phase's sweep begins once its mark is taken: what is written after it is found by the removals' re-checks.
Phase = Literal["manifests", "links", "blobs"]


@dataclass(frozen=True, slots=True)
class GcOptions:
    """``delete_untagged``: untagged manifests that no live manifest needs go too. ``delay``: the grace period
    in seconds. ``dry_run``: report, remove nothing."""

    delete_untagged: bool = False
    delay: float = DEFAULT_DELAY
    dry_run: bool = False


def forget_manifest(registry: Registry, name: str, digest: Digest) -> None:
    """Tell the descriptor cache (if any) that ``name`` no longer has manifest ``digest``."""
    if registry.cache is not None:
        registry.cache.forget_link(name, digest)


class _Run:
    def __init__(self, registry: Registry, options: GcOptions, now: float, on_removed: Callable[[Removal], None]):
        self.registry = registry
        self.driver = registry.driver
        self.options = options
        self.cutoff = now - options.delay
        self.now = now
        self.report = GcReport(options.dry_run)
        self.read_manifest = ManifestReader(registry.blobs)
        self._on_removed = on_removed
        self.v1: V1Mark | None = None

    def removed(self, removal: Removal) -> None:
        self.report.removed.append(removal)
        self._on_removed(removal)

    def old(self, path: str) -> bool:
        """Whether ``path`` is still there and older than the grace period (read again just before a removal)."""
        try:
            return self.driver.stat(path).modified <= self.cutoff
        except PathNotFound:
            return False

    def reused(self, digest: Digest) -> bool:
        """Whether a write re-used blob ``digest`` within the grace period (``BlobStore.mark_used``: its bytes
        uploaded again, a mount), read just before removing it."""
        used = self.registry.blobs.last_used(digest)
        return used is not None and used > self.cutoff

    def remark_if_written(self, repository: RepositoryInventory, live: LiveSet) -> None:
        """Mark ``repository`` again into ``live`` when a manifest was written into it since its mark (its token
        changed): called just before one of its manifests or links goes, so what a manifest pushed meanwhile
        names (blobs the repository linked long ago, untagged children of an index) stays."""
        if manifests_token(self.driver, repository.name) == repository.written:
            return
        fresh = read_repository(self.driver, repository.name)
        options = self.options
        mark_repository(self.read_manifest, fresh, live, delete_untagged=options.delete_untagged, cutoff=self.cutoff)
        repository.written = fresh.written

    def inventory(self) -> list[RepositoryInventory]:
        return [read_repository(self.driver, name) for name in self.registry.repositories()]

    def mark(self, repositories: Iterable[RepositoryInventory]) -> LiveSet:
        # A pull-through cache's blobs are the cache's to evict (its TTL and size cap), not the collector's.
        cached = {entry.digest for entry in read_records(self.driver)}
        self.v1 = mark_v1(self.driver, self.cutoff)
        also_live = self.v1.blobs | cached
        return mark(
            self.read_manifest,
            repositories,
            delete_untagged=self.options.delete_untagged,
            cutoff=self.cutoff,
            also_live=also_live,
        )

    # -- phase 1 ------------------------------------------------------------------------------------------------

    def sweep_manifests(self, repositories: list[RepositoryInventory], live: LiveSet) -> None:
        for repository in repositories:
            name = repository.name
            for digest, revision in sorted(repository.revisions.items(), key=lambda item: str(item[0])):
                if digest in live.manifests[name] or revision.modified > self.cutoff:
                    continue
                if not self.options.dry_run:
                    self.remark_if_written(repository, live)
                    if digest in live.manifests[name] or not self.old(paths.manifest_revision(name, digest)):
                        continue  # pushed again, or named by a manifest pushed, since the mark
                    self._remove_revision(name, digest, revision.media_type)
                self.removed(Removal("manifest", str(digest), name))

    def _remove_revision(self, name: str, digest: Digest, media_type: str) -> None:
        # The referrers entry first: it is found from the manifest, which must still be readable for that.
        references = self.read_manifest(digest, media_type)
        if references is not None and references.subject is not None:
            try:
                self.driver.delete(paths.referrer_entry(name, references.subject, digest))
            except PathNotFound:
                pass
        forget_manifest(self.registry, name, digest)
        try:
            self.driver.delete(revision_dir(name, digest))
        except PathNotFound:
            pass
        forget_manifest(self.registry, name, digest)

    # -- phase 2 ------------------------------------------------------------------------------------------------

    def sweep_links(
        self, repositories: list[RepositoryInventory], live: LiveSet, dead: set[tuple[str, Digest]]
    ) -> None:
        """``dead``: manifests a dry run's phase 1 would have removed (a real run has removed them)."""
        for repository in repositories:
            name = repository.name
            for digest, modified in sorted(repository.links.items(), key=lambda item: str(item[0])):
                if digest in live.links[name] or modified > self.cutoff:
                    continue
                if not self.options.dry_run:
                    self.remark_if_written(repository, live)
                    if digest in live.links[name] or not self.old(paths.layer_link(name, digest)):
                        continue
                    try:
                        self.registry.unlink_blob(name, digest)
                    except ApiError:
                        continue  # removed meanwhile
                self.removed(Removal("link", str(digest), name))
            for entry in repository.referrers:
                if entry.referrer in repository.revisions or (name, entry.referrer) in dead:
                    continue  # its manifest is there, or (a dry run) the entry went with it in phase 1
                if not self.options.dry_run:
                    # A referrer pushed while the repository was read writes its revision, then this entry:
                    # an entry within the grace period, or whose revision is there now, stays.
                    if not self.old(entry.path) or exists(self.driver, paths.manifest_revision(name, entry.referrer)):
                        continue
                    try:
                        self.driver.delete(entry.path)
                    except PathNotFound:
                        continue
                self.removed(Removal("referrer-entry", str(entry.referrer), name))

    def sweep_v1_images(self) -> None:
        assert self.v1 is not None, "marked first"
        sweep_v1_images(self.driver, self.v1, cutoff=self.cutoff, dry_run=self.options.dry_run, removed=self.removed)
        options = self.options
        sweep_v1_repositories(self.driver, cutoff=self.cutoff, dry_run=options.dry_run, removed=self.removed)

    def sweep_repositories(self, names: Iterable[str]) -> None:
        # A push into an empty repository opens its upload session before it writes the repository's first link
        # and closes it after: a repository with a session open is not empty for long, and stays.
        uploading = uploading_repositories(self.driver)
        for name in names:
            if name in uploading:
                continue
            if self.options.dry_run:
                self.removed(Removal("repository", name, name))
                continue
            if not read_repository(self.driver, name).empty:
                continue
            for part in _REPOSITORY_PARTS:
                try:
                    self.driver.delete(f"{paths.repository_dir(name)}/{part}")
                except PathNotFound:
                    pass
            self._remove_empty_parents(name, uploading)
            self.removed(Removal("repository", name, name))

    def _remove_empty_parents(self, name: str, uploading: set[str]) -> None:
        # A nested repository (a/b inside a) keeps its parents' directories; an empty chain of them goes, unless a
        # push is creating a repository under one of them.
        components = name.split("/")
        while components:
            prefix = "/".join(components)
            directory = paths.repository_dir(prefix)
            if children(self.driver, directory) or any(u.startswith(f"{prefix}/") for u in uploading):
                return
            try:
                self.driver.delete(directory)
            except PathNotFound:
                pass
            components.pop()

    # -- phase 3 ------------------------------------------------------------------------------------------------

    def sweep_blobs(self, live: LiveSet) -> None:
        # Streamed, in the listing's order (sorted per directory): the blob list is never held whole.
        for digest, info in blob_directories(self.driver):
            if info is None:
                self._remove_stale_marker(digest)
                continue
            if digest in live.blobs or info.modified > self.cutoff:
                continue
            if not self.options.dry_run:
                if not self.old(paths.blob_data(digest)) or self.reused(digest):
                    continue
                try:
                    self.registry.blobs.delete(digest)
                except PathNotFound:
                    continue
            self.removed(Removal("blob", str(digest), size=info.size))

    def _remove_stale_marker(self, digest: Digest) -> None:
        # Only the marker: its blob's data may be on its way back into the directory (a new upload's commit).
        if self.options.dry_run or self.reused(digest):
            return
        try:
            self.driver.delete(paths.blob_used(digest))
        except PathNotFound:
            pass

    def sweep_uploads(self) -> None:
        for upload_id in idle_uploads(self.registry, self.options.delay, now=self.now):
            try:
                size = self.driver.stat(paths.upload_data(upload_id)).size
            except PathNotFound:
                size = 0
            if not self.options.dry_run:
                try:
                    self.registry.cancel_upload(upload_id)
                except OSError:
                    continue  # written to while it was being removed: in use again after all
            self.removed(Removal("upload", upload_id, size=size))

    def sweep_abandoned_writes(self) -> None:
        """A blob's move into ``blobs/`` killed mid-way leaves a multipart upload there that no listing shows:
        aborted once older than the grace period (a move in progress takes seconds)."""
        if not isinstance(self.driver, ObjectStoreDriver):
            return
        for key, upload_id, size in self.driver.abandoned_writes(paths.BLOBS, before=self.cutoff):
            if not self.options.dry_run:
                self.driver.abort_upload(key, upload_id)
            self.removed(Removal("upload", f"{key} ({upload_id})", size=size))

    def sweep_v1_uploads(self) -> None:
        sweep_v1_uploads(self.driver, cutoff=self.cutoff, dry_run=self.options.dry_run, removed=self.removed)


def _would_be_empty(repository: RepositoryInventory, removals: list[Removal]) -> bool:
    gone = {(r.kind, r.what) for r in removals if r.repository == repository.name}
    return (
        not repository.tags
        and all(("manifest", str(d)) in gone for d in repository.revisions)
        and all(("link", str(d)) in gone for d in repository.links)
        and all(
            ("referrer-entry", str(e.referrer)) in gone or e.referrer in repository.revisions
            for e in repository.referrers
        )
    )


def collect_garbage(
    registry: Registry,
    options: GcOptions | None = None,
    *,
    now: float | None = None,
    on_removed: Callable[[Removal], None] | None = None,
    on_phase: Callable[[Phase], None] | None = None,
) -> GcReport:
    """Remove what no tag reaches (see the module's docstring); blocking, call it in a worker thread.

    ``on_removed`` is called after each removal (progress, logs), in the order of the sweep; ``on_phase`` when a
    phase's mark is taken, before its first removal.
    """
    options = options or GcOptions()
    run = _Run(registry, options, time.time() if now is None else now, on_removed or (lambda removal: None))
    phase = on_phase or (lambda phase: None)
    repositories = run.inventory()
    live = run.mark(repositories)
    phase("manifests")
    run.sweep_manifests(repositories, live)
    dead = {(r.repository, Digest.parse(r.what)) for r in run.report.removed if r.repository is not None}
    if not options.dry_run:
        repositories = run.inventory()
        live = run.mark(repositories)
        dead = set()
    phase("links")
    run.sweep_links(repositories, live, dead)
    run.sweep_v1_images()
    run.sweep_repositories(r.name for r in repositories if _would_be_empty(r, run.report.removed))
    if not options.dry_run:
        live = run.mark(run.inventory())
    phase("blobs")
    run.sweep_blobs(live)
    run.sweep_abandoned_writes()
    run.sweep_uploads()
    run.sweep_v1_uploads()
    if run.report.removed:
        logger.info(
            "garbage collection%s: %d item(s), %d bytes freed",
            " (dry run)" if options.dry_run else "",
            len(run.report.removed),
            run.report.bytes_freed,
        )
    return run.report
