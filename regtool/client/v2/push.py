"""Push a local image (OCI layout or docker-archive) to a registry over v2, keeping its digests.

Order (protocols.md §4.6): every blob first, concurrently (bounded by ``jobs``, largest first), then the
manifests, children before their index, the tagged one last; the registry's ``Docker-Content-Digest`` is checked
against the local digest.

Each blob goes through ``upload.BlobUploader`` (the one v2 blob upload: HEAD, mounts, sessions resumed across
runs, monolithic or chunked, retries), its body a ``FileBody``: sent from the source file in worker threads and
hashed on its way out, so a corrupt source blob fails with IntegrityError (exit 5) before the registry commits
any of it, and no manifest is put. Mount candidates are the ``mount_from`` repositories and the repository a
pulled layout came from, when it is on the same registry.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from regtool.client.progress import NullProgress, Progress, report_image
from regtool.client.results import PushResult
from regtool.client.resume import UploadStateStore
from regtool.client.tasks import PRECONNECT_PER_JOB, run_bounded
from regtool.client.threads import in_thread, shielded
from regtool.client.v2.api import RegistryAPI
from regtool.client.v2.upload import (
    DEFAULT_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    READ_SIZE,
    BlobUploader,
    Uploaded,
    UploadTally,
)
from regtool.digest import Digest
from regtool.errors import IntegrityError, InvalidReference, UsageError
from regtool.image.source import ImageSource, open_source, parse_source_spec
from regtool.manifest import Descriptor, Manifest, index_tree
from regtool.reference import Reference

__all__ = ["DEFAULT_CHUNK_SIZE", "MIN_CHUNK_SIZE", "READ_SIZE", "V2Pusher"]


class V2Pusher:
    """Pushes images over v2 through a RegistryAPI; ``chunk_size`` None means monolithic uploads."""

    def __init__(
        self,
        api: RegistryAPI,
        *,
        jobs: int = 8,
        progress: Progress | None = None,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        resume: UploadStateStore | None = None,
    ) -> None:
        if chunk_size is not None and chunk_size < 1:
            raise UsageError(f"chunk size must be positive, got {chunk_size}")
        self.api = api
        self.jobs = max(1, jobs)
        self.progress = progress or NullProgress()
        self.uploader = BlobUploader(api, progress=self.progress, chunk_size=chunk_size, resume=resume, jobs=self.jobs)

    async def push(self, source: str, ref: Reference, *, mount_from: Sequence[str] = ()) -> PushResult:
        started = time.monotonic()
        kind, path, source_ref = parse_source_spec(source)
        if kind == "docker-archive":
            # Its layers are compressed while they upload (see archivepush), not before.
            from regtool.client.v2.archivepush import push_archive

            return await push_archive(self, path, source_ref, ref, mount_from=mount_from, started=started)
        src = await in_thread(open_source, source)
        try:
            return await self.push_source(src, ref, mount_from=mount_from, started=started)
        finally:
            # Shielded: a cancelled push must still remove a docker-archive source's temporary blobs.
            await shielded(in_thread(src.close))

    async def push_source(
        self,
        src: ImageSource,
        ref: Reference,
        *,
        mount_from: Sequence[str] = (),
        started: float | None = None,
        uploaded: Mapping[Digest, Uploaded] | None = None,
    ) -> PushResult:
        """Push an already opened ImageSource to ``ref``; ``uploaded`` are blobs already sent (counted, not sent)."""
        uploaded = uploaded or {}
        started = time.monotonic() if started is None else started
        retries_before = self.api.retry_log.count
        root = src.root
        if root.kind == "schema1":
            raise UsageError(f"{src.description}: schema1 manifests cannot be pushed")
        if ref.digest is not None and ref.digest != root.digest:
            raise UsageError(f"{ref}: the source's manifest is {root.digest}, not the digest in the reference")
        children: list[Manifest] = []
        if root.is_index:

            async def local(entries: Sequence[Descriptor]) -> list[Manifest]:
                return [src.manifest(entry.digest) for entry in entries]

            children = await index_tree(root, local, where=src.description)
        images = [m for m in (*children, root) if m.kind == "image"]
        for image in images:
            report_image(self.progress, image)
        blobs: dict[Digest, Descriptor] = {}
        for image in images:
            for desc in (image.config, *image.layers):
                if desc is not None and not desc.urls:
                    blobs.setdefault(desc.digest, desc)
        base = await self.api.base_url(ref.registry)
        self.api.preconnect(base, min(len(blobs), PRECONNECT_PER_JOB * self.jobs))
        tally = UploadTally()
        sources = (*mount_from, *(_known_origin(src, ref, mount_from)))

        async def one(desc: Descriptor) -> None:
            if desc.digest in uploaded:
                tally.count(uploaded[desc.digest])
                return
            size = src.blob_size(desc.digest)
            if size != desc.size:
                raise IntegrityError(f"blob {desc.digest}: the source has {size} bytes, the manifest says {desc.size}")
            body = self.uploader.file_body(src, desc)
            tally.count(await self.uploader.upload(ref, desc, body, mount_from=sources, explicit=len(mount_from)))

        await run_bounded(sorted(blobs.values(), key=lambda d: -d.size), one, self.jobs, size_of=lambda d: d.size)
        for child in children:
            await self.api.put_manifest(ref.with_digest(child.digest), child)
        target = ref if ref.tag is not None or ref.digest is not None else ref.with_digest(root.digest)
        if target.tag is not None and target.digest is not None:
            target = Reference(target.registry, target.repository, target.tag)
        await self.api.put_manifest(target, root)
        return PushResult(
            reference=str(ref),
            digest=root.digest,
            media_type=root.media_type,
            protocol="v2",
            blobs_uploaded=tally.uploaded,
            blobs_skipped=tally.skipped,
            blobs_mounted=tally.mounted,
            bytes_uploaded=tally.bytes,
            recompressed=src.recompressed,
            seconds=time.monotonic() - started,
            retries=self.api.retry_log.count - retries_before,
        )


def _known_origin(src: ImageSource, ref: Reference, mount_from: Sequence[str]) -> tuple[str, ...]:
    """The repository the source layout was pulled from, when it is on ``ref``'s registry: a mount candidate."""
    origin = getattr(src, "origin", None)
    if not isinstance(origin, str):
        return ()
    try:
        parsed = Reference.parse(origin)
    except InvalidReference:
        return ()
    if parsed.registry != ref.registry or parsed.repository == ref.repository or parsed.repository in mount_from:
        return ()
    return (parsed.repository,)
