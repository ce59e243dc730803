"""Push a local image (OCI layout or docker-archive) to a registry over v2, keeping its digests.

Order (protocols.md §4.6): every blob first, concurrently (bounded by ``jobs``), then the manifests, children
before their index. For each blob:

1. ``HEAD`` it: present with the right size -> skipped.
2. With ``mount_from``: ``POST uploads/?mount=<digest>&from=<repo>`` for each; 201 -> mounted. A 202 opens an
   ordinary upload session, which is used for the upload.
3. Otherwise ``POST uploads/`` (202 + Location), then either one ``PUT <location>?digest=`` carrying the whole
   blob (monolithic, up to ``chunk_size``), or ``PATCH`` chunks with ``Content-Range`` and a final empty ``PUT``.

Locations may be relative or absolute and may carry their own query (distribution's ``_state``); each response's
Location is the next request's target. Bodies stream from the source files (memory stays flat); a 307/308 on an
upload re-opens the stream at the same offset. An upload that fails with a retryable status or a connection
error starts over with a new session, up to the retry policy's count.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import anyio
import anyio.to_thread
import httpx

from regtool.client.progress import NullProgress, Progress
from regtool.client.registry_api import RegistryAPI
from regtool.client.results import PushResult
from regtool.client.tasks import run_bounded
from regtool.client.transport import redact_url
from regtool.digest import Digest
from regtool.errors import IntegrityError, ProtocolError, RegistryError, TransportError, UsageError
from regtool.image.source import ImageSource, open_source
from regtool.manifest import Descriptor, Manifest
from regtool.protocol import v2
from regtool.reference import Reference

__all__ = ["DEFAULT_CHUNK_SIZE", "READ_SIZE", "V2Pusher"]

# Blobs up to this size go up in one PUT; larger ones in PATCH chunks of this size (when chunking is asked for).
DEFAULT_CHUNK_SIZE: int | None = None
READ_SIZE = 1 << 20


@dataclass
class _Tally:
    uploaded: int = 0
    skipped: int = 0
    mounted: int = 0
    bytes: int = 0


class V2Pusher:
    """Pushes images over v2 through a RegistryAPI; ``chunk_size`` None means monolithic uploads."""

    def __init__(
        self,
        api: RegistryAPI,
        *,
        jobs: int = 8,
        progress: Progress | None = None,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if chunk_size is not None and chunk_size < 1:
            raise UsageError(f"chunk size must be positive, got {chunk_size}")
        self.api = api
        self.jobs = max(1, jobs)
        self.progress = progress or NullProgress()
        self.chunk_size = chunk_size

    async def push(self, source: str, ref: Reference, *, mount_from: Sequence[str] = ()) -> PushResult:
        started = time.monotonic()
        src = await anyio.to_thread.run_sync(open_source, source)
        try:
            return await self.push_source(src, ref, mount_from=mount_from, started=started)
        finally:
            await anyio.to_thread.run_sync(src.close)

    async def push_source(
        self, src: ImageSource, ref: Reference, *, mount_from: Sequence[str] = (), started: float | None = None
    ) -> PushResult:
        """Push an already opened ImageSource to ``ref``."""
        started = time.monotonic() if started is None else started
        root = src.root
        if root.kind == "schema1":
            raise UsageError(f"{src.description}: schema1 manifests cannot be pushed")
        if ref.digest is not None and ref.digest != root.digest:
            raise UsageError(f"{ref}: the source's manifest is {root.digest}, not the digest in the reference")
        children: list[Manifest] = []
        if root.is_index:
            children = [src.manifest(d.digest) for d in root.manifests]
        images = [m for m in (*children, root) if m.kind == "image"]
        blobs: dict[Digest, Descriptor] = {}
        for image in images:
            for desc in (image.config, *image.layers):
                if desc is not None and not desc.urls:
                    blobs.setdefault(desc.digest, desc)
        base = await self.api.base_url(ref.registry)
        tally = _Tally()

        async def one(desc: Descriptor) -> None:
            await self._blob(src, ref, base, desc, mount_from, tally)

        await run_bounded(sorted(blobs.values(), key=lambda d: -d.size), one, self.jobs)
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
        )

    # -- one blob ---------------------------------------------------------------------------------------

    async def _blob(
        self,
        src: ImageSource,
        ref: Reference,
        base: str,
        desc: Descriptor,
        mount_from: Sequence[str],
        tally: _Tally,
    ) -> None:
        key = str(desc.digest)
        size = src.blob_size(desc.digest)
        if size != desc.size:
            raise IntegrityError(f"blob {desc.digest}: the source has {size} bytes, the manifest says {desc.size}")
        self.progress.start(key, desc.digest.short, desc.size)
        present = await self.api.blob_size(ref.registry, ref.repository, desc.digest)
        if present is not None and present in {desc.size, -1}:
            tally.skipped += 1
            self.progress.finish(key, status="skipped")
            return
        attempt = 0
        while True:
            try:
                location = await self._open_session(ref, base, desc, mount_from)
                if location is None:
                    tally.mounted += 1
                    self.progress.finish(key, status="mounted")
                    return
                await self._upload(src, desc, location, key)
                break
            except (TransportError, RegistryError) as exc:
                status = getattr(exc, "status", None)
                retryable = isinstance(exc, TransportError) or (
                    status is not None and status in self.api.retry.statuses
                )
                if not retryable or self.api.retry.exhausted(attempt):
                    self.progress.finish(key, status="failed")
                    raise
                self.progress.event("retry", key=key, reason=str(exc))
                await anyio.sleep(self.api.retry.backoff(attempt))
                attempt += 1
            except BaseException:
                self.progress.finish(key, status="failed")
                raise
        tally.uploaded += 1
        tally.bytes += desc.size
        self.progress.finish(key, status="done")

    async def _open_session(self, ref: Reference, base: str, desc: Descriptor, mount_from: Sequence[str]) -> str | None:
        """The upload URL of a new session, or None when a mount made the upload unnecessary."""
        what = f"blob {desc.digest}"
        for source_repo in mount_from:
            if source_repo == ref.repository:
                continue
            url = base + v2.uploads_path(ref.repository, mount=str(desc.digest), **{"from": source_repo})
            response = await self.api.send("POST", url, what=f"mount of {what} from {source_repo}", expect=(201, 202))
            if response.status_code == 201:
                return None
            # 202: the registry opened an upload session instead; use it (and stop trying other sources).
            return _location(response, what)
        url = base + v2.uploads_path(ref.repository)
        response = await self.api.send("POST", url, what=f"upload of {what}", expect=(202,))
        return _location(response, what)

    async def _upload(self, src: ImageSource, desc: Descriptor, location: str, key: str) -> None:
        what = f"upload of blob {desc.digest}"
        chunk = self.chunk_size
        if chunk is None or desc.size <= chunk:
            url = _with_digest(location, desc.digest)
            response = await self.api.send_body(
                "PUT",
                url,
                what=what,
                body=self._reader(src, desc.digest, 0, desc.size, key),
                length=desc.size,
                headers={"Content-Type": "application/octet-stream"},
                expect=(201, 204),
            )
            _check_stored(response, desc.digest, what)
            return
        offset = 0
        while offset < desc.size:
            length = min(chunk, desc.size - offset)
            response = await self.api.send_body(
                "PATCH",
                location,
                what=what,
                body=self._reader(src, desc.digest, offset, length, key),
                length=length,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                expect=(202, 204),
            )
            location = _location(response, what)
            offset += length
        response = await self.api.send("PUT", _with_digest(location, desc.digest), what=what, expect=(201, 204))
        _check_stored(response, desc.digest, what)

    def _reader(
        self, src: ImageSource, digest: Digest, offset: int, length: int, key: str
    ) -> Callable[[], AsyncIterator[bytes]]:
        """A factory of async byte streams over ``length`` bytes of the blob from ``offset`` (one per attempt)."""

        async def stream() -> AsyncIterator[bytes]:
            handle: BinaryIO = await anyio.to_thread.run_sync(src.open_blob, digest)
            sent = 0
            try:
                if offset:
                    await anyio.to_thread.run_sync(handle.seek, offset)
                remaining = length
                while remaining:
                    data = await anyio.to_thread.run_sync(handle.read, min(READ_SIZE, remaining))
                    if not data:
                        raise IntegrityError(f"blob {digest}: the source file ended {remaining} bytes early")
                    remaining -= len(data)
                    sent += len(data)
                    self.progress.advance(key, len(data))
                    yield data
            finally:
                await anyio.to_thread.run_sync(handle.close)

        return stream


def _location(response: httpx.Response, what: str) -> str:
    value = response.headers.get("Location")
    if not value:
        raise ProtocolError(f"{what}: no Location in the HTTP {response.status_code} from {redact_url(response.url)}")
    return str(response.url.join(value))


def _with_digest(location: str, digest: Digest) -> str:
    return str(httpx.URL(location).copy_merge_params({"digest": str(digest)}))


def _check_stored(response: httpx.Response, digest: Digest, what: str) -> None:
    header = response.headers.get(v2.CONTENT_DIGEST_HEADER)
    if header and Digest.is_valid(header) and Digest.parse(header) != digest:
        raise IntegrityError(f"{what}: the registry stored {header} (at {redact_url(response.url)})")
