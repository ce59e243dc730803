"""Manifest-driven concurrent pull over registry v2 into an OCI layout or a docker-archive.

1. GET the manifest with the full Accept list (checked against the digest when pulling by digest).
2. An index / manifest list: pick the platform's manifest (default: the host's), or keep every child with
   ``all_platforms``; child manifests are fetched by digest and verified (``resolve.plan_images``, the
   resolution copy and inspect share).
3. The configs and layers of every selected image are fetched concurrently (a task group bounded by
   ``jobs``, ``tasks.run_bounded``), each streamed into the layout's BlobStore: large reads off the connection,
   hashing and writing in a worker thread, size and digest verified before the blob appears. Blobs the layout
   already has are skipped; a partial left by an interrupted pull resumes with a Range request.
4. Manifests go in last (children before their index), then index.json names the image.

With mirrors (an ``EndpointChain``), each manifest and each blob is asked of the mirrors in order and of the
primary last (endpoints.py); the image is named by the reference pulled, wherever its bytes came from.

A docker-archive is pulled into a temporary layout next to the destination, whose store writes the archive while
the blobs arrive (``layer_unpack.UnpackingStore``: planned from the config, fetched first; each layer decompressed
straight into it when its turn comes) and renames it into place at the end. Any integrity failure raises
IntegrityError naming the blob and the registry URL; nothing of that blob remains in the destination. A pull
into a new layout that fails for any reason but the network (or Ctrl-C) removes what it created; the partial
downloads of other blobs stay for a resume, and the error says so. A destination that cannot be written is a
UsageError naming it (not the temporary directory).
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from regtool.client.endpoints import EndpointChain
from regtool.client.mirrors import Endpoint
from regtool.client.progress import NullProgress, Progress, report_image
from regtool.client.results import PullResult
from regtool.client.tasks import PRECONNECT_PER_JOB, run_bounded
from regtool.client.threads import in_thread, shielded
from regtool.client.v2.api import RegistryAPI
from regtool.client.v2.blobdownload import BlobDownloader
from regtool.client.v2.rangefetch import SplitPolicy
from regtool.client.v2.resolve import ImagePlan, plan_images
from regtool.errors import RegtoolError, TransportError, UsageError
from regtool.image.blobstore import BlobStore
from regtool.image.oci_layout import OciLayout
from regtool.manifest import Descriptor, Platform
from regtool.protocol import v2
from regtool.reference import Reference

__all__ = ["V2Puller"]


@dataclass
class _Tally:
    downloaded: int = 0
    skipped: int = 0
    bytes: int = 0


class V2Puller:
    """Pulls images over v2 through a RegistryAPI; one instance per Client."""

    def __init__(
        self, api: RegistryAPI, *, jobs: int = 8, progress: Progress | None = None, split: SplitPolicy | None = None
    ) -> None:
        self.api = api
        self.jobs = max(1, jobs)
        self.progress = progress or NullProgress()
        self.downloader = BlobDownloader(api, jobs=self.jobs, progress=self.progress, split=split)

    async def pull(
        self,
        ref: Reference,
        dest: Path,
        *,
        format: str = "oci",
        platform: Platform | None = None,
        all_platforms: bool = False,
        chain: EndpointChain | None = None,
    ) -> PullResult:
        """Pull ``ref`` into ``dest``, from ``chain``'s endpoints in order (default: ``ref``'s registry only)."""
        started = time.monotonic()
        chain = chain or EndpointChain((Endpoint(ref),), self.progress)
        retries_before = self.api.retry_log.count
        if format not in {"oci", "docker-archive"}:
            raise UsageError(f"unknown output format {format!r}: expected oci or docker-archive")
        if format == "docker-archive" and all_platforms:
            raise UsageError("a docker-archive holds one image: use --platform instead of --all-platforms")
        # The blob transfers find their connections open: they are made while the manifest is in flight.
        await self._preconnect(chain)
        plan = await plan_images(
            self.api, ref, platform=platform, all_platforms=all_platforms, chain=chain, jobs=self.jobs
        )
        for image in plan.images:
            report_image(self.progress, image)
        tally = _Tally()
        if format == "oci":
            existed = dest.exists()
            created = OciLayout.is_new(dest)
            with _writable(dest):
                layout = OciLayout.open(dest, create=True)
            try:
                with _writable(dest, only=_FULL_OR_DENIED):
                    await self._fill(ref, layout, plan, tally, chain)
            except BaseException as exc:
                if created and isinstance(exc, RegtoolError) and not isinstance(exc, TransportError):
                    kept = await shielded(in_thread(layout.take_back_new, existed))
                    if kept:
                        raise type(exc)(
                            f"{exc}; the partial downloads of {kept} other blob(s) are kept in {dest} "
                            "for a resume: run the command again"
                        ) from None
                raise
        else:
            if plan.entry.kind != "image":
                raise UsageError(f"{ref}: a docker-archive holds one image, got {plan.entry.kind}")
            # Here: the archive writer and the unpacking store bring tarfile, gzip and ISA-L, which a pull into
            # a layout never uses.
            from regtool.image.layer_unpack import UnpackingStore

            work = dest.parent / f".{dest.name}.regtool-pull"
            tags = [f"{ref.repository_ref}:{ref.tag}"] if ref.tag else []
            with _writable(dest):
                work.parent.mkdir(parents=True, exist_ok=True)
                layout = OciLayout.open(work, create=True, durable=False)
                unpacking = UnpackingStore(work, plan.entry, tags, dest)
            try:
                await self._fill(ref, layout, plan, tally, chain, store=unpacking)
                stop = threading.Event()
                with _writable(dest):
                    await in_thread(unpacking.finish, stop, on_cancel=stop.set)
            except BaseException as exc:
                await shielded(in_thread(unpacking.close))
                # An interrupted or network-failed pull keeps its work layout (and the partial
                # blobs in its staging area) so the next pull to the same tarball resumes; other failures clean up.
                if isinstance(exc, RegtoolError) and not isinstance(exc, TransportError):
                    await shielded(in_thread(lambda: shutil.rmtree(work, ignore_errors=True)))
                raise
            await in_thread(lambda: shutil.rmtree(work, ignore_errors=True))
        return PullResult(
            reference=str(ref),
            digest=plan.entry.digest,
            media_type=plan.entry.media_type,
            dest=str(dest),
            format=format,
            protocol="v2",
            platforms=plan.platforms,
            blobs_downloaded=tally.downloaded,
            blobs_skipped=tally.skipped,
            bytes_downloaded=tally.bytes,
            seconds=time.monotonic() - started,
            retries=self.api.retry_log.count - retries_before,
        )

    # -- planning ---------------------------------------------------------------------------------------

    async def _preconnect(self, chain: EndpointChain) -> None:
        endpoint = chain.endpoints[0]
        try:
            await self.api.preconnect_registry(endpoint.ref.registry, PRECONNECT_PER_JOB * self.jobs)
        except RegtoolError as exc:
            if not endpoint.mirror:
                raise
            # Said once here, and the mirror is not pinged again for the manifest.
            chain.failed(f"manifest {endpoint.ref.reference}", endpoint, exc)

    # -- transfer ---------------------------------------------------------------------------------------

    async def _fill(
        self,
        ref: Reference,
        layout: OciLayout,
        plan: ImagePlan,
        tally: _Tally,
        chain: EndpointChain,
        *,
        store: BlobStore | None = None,
    ) -> None:
        """Fetch the plan's missing blobs into ``store`` (default: the layout's own), then name the image."""
        store = store or layout.blobs
        missing: list[Descriptor] = []
        for desc in plan.blobs():
            if store.size(desc.digest) == desc.size:
                tally.skipped += 1
                self.progress.start(str(desc.digest), desc.digest.short, desc.size)
                self.progress.finish(str(desc.digest), status="skipped")
            else:
                missing.append(desc)

        async def fetch(desc: Descriptor, at: Endpoint) -> int:
            url = await self.api.base_url(at.ref.registry) + v2.blob_path(at.ref.repository, str(desc.digest))
            return await self.downloader.download(url, desc, store)

        async def one(desc: Descriptor) -> None:
            got = await chain.first(f"blob {desc.digest}", lambda at: fetch(desc, at))
            tally.downloaded += 1
            tally.bytes += got

        # Configs first (a docker-archive is planned from its config, and written while its layers arrive), then
        # largest first, so the long transfers start early and the tail is short.
        configs = {image.config.digest for image in plan.images if image.config is not None}
        order = sorted(missing, key=lambda d: (d.digest not in configs, -d.size))
        try:
            await run_bounded(order, one, self.jobs, size_of=lambda d: d.size)
            for manifest in plan.manifests:
                await in_thread(store.put_bytes, manifest.digest, manifest.raw)
        finally:
            # Every writer is closed here: drop the staging directory unless partials are kept for a resume.
            store.tidy()
        image_name = str(ref.with_tag(ref.tag)) if ref.tag else str(ref)
        layout.add_manifest(plan.entry.descriptor(), ref_name=ref.tag, image_name=image_name)


# The OS errors of writing blobs into a destination that is full or closed to us. Others (a connection's) are
# not the destination's.
_FULL_OR_DENIED = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


@contextlib.contextmanager
def _writable(dest: Path, *, only: frozenset[int] | None = None) -> Iterator[None]:
    """OS errors of writing the destination (or its work directory beside it) -> UsageError naming ``dest``;
    with ``only``, just the OS errors of those errnos."""
    try:
        yield
    except OSError as exc:
        if only is not None and exc.errno not in only:
            raise
        raise UsageError(f"cannot write to {dest}: {exc.strerror or exc}") from None
