"""Push a local image (OCI layout or docker-archive) to a registry over v2, keeping its digests.

Order (protocols.md §4.6): every blob first, concurrently (bounded by ``jobs``), then the manifests, children
before their index. For each blob:

1. ``HEAD`` it: present with the right size -> skipped.
2. With ``mount_from``: ``POST uploads/?mount=<digest>&from=<repo>`` for each; 201 -> mounted. A 202 opens an
   ordinary upload session, which is used for the upload.
3. Otherwise ``POST uploads/`` (202 + Location), then either one ``PUT <location>?digest=`` carrying the whole
   blob (monolithic, up to ``chunk_size``), or ``PATCH`` chunks with ``Content-Range`` and a final empty ``PUT``.

Locations may be relative or absolute and may carry their own query (distribution's ``_state``); each response's
Location is the next request's target. Bodies stream from the source files (memory stays flat), sent from worker
threads (``BlobFetcher.body_sender``: through a reused 1 MiB buffer, where each piece is hashed on its way out);
a 307/308 on an upload re-opens the file at the same offset. An upload
that fails with a retryable status or a connection error is retried, up to the retry policy's count.

Integrity: every source blob is hashed as its bytes are read for sending (``_SourceCheck``); the piece that
would complete it is held back until the hash matches the descriptor, and the final ``PUT`` is sent only for a
blob whose bytes matched. A corrupt source therefore fails with IntegrityError (exit 5) before the registry
commits any of it, and no manifest is put.

Resume: every session's URL and acknowledged offset are kept on disk (``resume.UploadStateStore``).
A retry, or the next run after a crash or Ctrl-C, asks the registry how far the session got (GET upload status)
and sends only the rest (``PATCH`` with ``Content-Range``, then ``PUT ?digest=``); a session the registry no
longer knows is forgotten and a new one opened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import anyio.to_thread
import httpx

from regtool.client.net.blobfetch import FetchCancelled, SourceTruncated
from regtool.client.net.retry import RetryBudget
from regtool.client.net.transport import redact_url
from regtool.client.progress import NullProgress, Progress, report_image
from regtool.client.results import PushResult
from regtool.client.resume import UploadClaim, UploadStateStore
from regtool.client.tasks import LARGE_WEIGHT, PRECONNECT_PER_JOB, first_error, run_bounded
from regtool.client.v2.api import RegistryAPI
from regtool.digest import Digest, DigestVerifier
from regtool.errors import (
    AuthError,
    IntegrityError,
    InvalidReference,
    NotFoundError,
    ProtocolError,
    RegistryError,
    TransportError,
    UsageError,
)
from regtool.image.source import ImageSource, open_source
from regtool.manifest import Descriptor, Manifest, index_tree
from regtool.protocol import v2
from regtool.protocol.ranges import chunk_range, parse_upload_progress
from regtool.reference import Reference

__all__ = ["DEFAULT_CHUNK_SIZE", "MIN_CHUNK_SIZE", "READ_SIZE", "V2Pusher"]

# Blobs up to this size go up in one PUT; larger ones in PATCH chunks of this size. Large enough that the extra
# round trips cost nothing measurable; small enough that an interrupted push of a big layer resumes from a recent
# chunk boundary on registries (distribution among them) that drop a chunk cut mid-body.
DEFAULT_CHUNK_SIZE = 256 << 20
READ_SIZE = 1 << 20
# The smallest ``--chunk-size`` the CLI takes: below it every chunk costs a round trip for next to no bytes (a
# 1 MiB blob in 1-byte chunks is a million requests). A registry's OCI-Chunk-Min-Length can raise it further.
MIN_CHUNK_SIZE = 64 << 10
# How often one blob may find its session gone and start a fresh one: enough for a session another client
# closed plus one purged under us, few enough that a registry forgetting every session fails the push.
_SESSIONS_GONE_MAX = 2


class _SessionGone(Exception):
    """The registry no longer knows the upload session (404 / BLOB_UPLOAD_UNKNOWN): open a fresh one."""

    def __init__(self, error: NotFoundError) -> None:
        super().__init__(str(error))
        self.error = error


class _SourceCheck:
    """The digest of one source blob, taken from its bytes as they are sent, in file order.

    ``feed(offset, piece)`` sees each piece before it goes out. Bytes sent again (after a redirect, or a retry from
    an earlier offset) are not hashed twice; bytes a resumed session already holds are read from the file first.
    The piece that completes the blob raises IntegrityError instead of going out when the digest does not
    match, so the registry never receives a whole wrong blob. Pieces arrive from worker threads, hence the lock.
    """

    def __init__(self, src: ImageSource, desc: Descriptor) -> None:
        self._src = src
        self._desc = desc
        self._verifier = DigestVerifier(desc.digest.algorithm)
        self._lock = threading.Lock()

    def feed(self, offset: int, piece: bytes | memoryview) -> None:
        with self._lock:
            end = offset + len(piece)
            position = self._verifier.size
            if end <= position:
                return
            if offset > position:
                self._read_to(offset)
                position = offset
            self._verifier.update(piece[position - offset :])
            if end >= self._desc.size:
                self._verify()

    def confirm(self) -> None:
        """Verify the whole blob (reading what this run did not send); called before the ``PUT`` that commits it."""
        with self._lock:
            self._read_to(self._desc.size)
            self._verify()

    def _read_to(self, offset: int) -> None:
        position = self._verifier.size
        if position >= offset:
            return
        with self._src.open_blob(self._desc.digest) as f:
            f.seek(position)
            remaining = offset - position
            while remaining:
                data = f.read(min(READ_SIZE, remaining))
                if not data:
                    raise IntegrityError(
                        f"blob {self._desc.digest}: the source file ended {remaining} bytes early "
                        f"({self._src.description})"
                    )
                self._verifier.update(data)
                remaining -= len(data)

    def _verify(self) -> None:
        actual = self._verifier.digest()
        if self._verifier.size != self._desc.size or actual != self._desc.digest:
            raise IntegrityError(
                f"blob {self._desc.digest}: the source's bytes hash to {actual}, not to the digest the manifest "
                f"names; refused before the registry stored it ({self._src.description})"
            )


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
        resume: UploadStateStore | None = None,
    ) -> None:
        if chunk_size is not None and chunk_size < 1:
            raise UsageError(f"chunk size must be positive, got {chunk_size}")
        self.api = api
        # Upload sessions are remembered on disk so a later run (or retry) continues them.
        self.resume = resume if resume is not None else UploadStateStore()
        self.jobs = max(1, jobs)
        self.progress = progress or NullProgress()
        self.chunk_size = chunk_size
        self._threads = anyio.CapacityLimiter(self.jobs * LARGE_WEIGHT)

    async def push(self, source: str, ref: Reference, *, mount_from: Sequence[str] = ()) -> PushResult:
        started = time.monotonic()
        src = await anyio.to_thread.run_sync(open_source, source)
        try:
            return await self.push_source(src, ref, mount_from=mount_from, started=started)
        finally:
            # Shielded: a cancelled push must still remove a docker-archive source's temporary blobs.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(src.close)

    async def push_source(
        self, src: ImageSource, ref: Reference, *, mount_from: Sequence[str] = (), started: float | None = None
    ) -> PushResult:
        """Push an already opened ImageSource to ``ref``."""
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
        tally = _Tally()
        sources = (*mount_from, *(_known_origin(src, ref, mount_from)))

        async def one(desc: Descriptor) -> None:
            await self._blob(src, ref, base, desc, sources, tally, explicit=len(mount_from))

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

    # -- one blob ---------------------------------------------------------------------------------------

    async def _blob(
        self,
        src: ImageSource,
        ref: Reference,
        base: str,
        desc: Descriptor,
        mount_from: Sequence[str],
        tally: _Tally,
        *,
        explicit: int,
    ) -> None:
        key = str(desc.digest)
        size = src.blob_size(desc.digest)
        if size != desc.size:
            raise IntegrityError(f"blob {desc.digest}: the source has {size} bytes, the manifest says {desc.size}")
        self.progress.start(key, desc.digest.short, desc.size)
        async with self.api.blob_upload_lock(ref.registry, ref.repository, desc.digest):
            claim = await anyio.to_thread.run_sync(self.resume.claim, ref.registry, ref.repository, key)
            try:
                offset = await self._blob_owned(src, ref, base, desc, mount_from, tally, claim, explicit=explicit)
            except IntegrityError:
                # The session may hold bytes of the bad source: never resume it, even once the source is fixed.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(claim.forget)
                self.progress.finish(key, status="failed")
                raise
            except BaseException:
                self.progress.finish(key, status="failed")
                raise
            finally:
                claim.release()
        if offset is not None:
            tally.uploaded += 1
            tally.bytes += desc.size - offset
            self.progress.finish(key, status="done")

    async def _blob_owned(
        self,
        src: ImageSource,
        ref: Reference,
        base: str,
        desc: Descriptor,
        mount_from: Sequence[str],
        tally: _Tally,
        claim: UploadClaim,
        *,
        explicit: int,
    ) -> int | None:
        """Skip, mount or upload one blob; the offset the upload started from, None when it was not uploaded.

        All the requests for the blob share one retry budget (the HEADs, the status GET, the upload's PATCHes
        and PUTs, and the retries of the whole upload here), so the attempts never exceed the policy's.
        """
        key = str(desc.digest)
        budget = RetryBudget(self.api.retry)
        present = await self.api.blob_size(ref.registry, ref.repository, desc.digest, budget=budget)
        if present is not None and present in {desc.size, -1}:
            await anyio.to_thread.run_sync(claim.forget)
            tally.skipped += 1
            self.progress.finish(key, status="skipped")
            return None
        check = _SourceCheck(src, desc)
        retrying = False
        sessions_gone = 0
        while True:
            try:
                if retrying:
                    # A retry: the last attempt may have stored the blob after all (its answer was lost).
                    present = await self.api.blob_size(ref.registry, ref.repository, desc.digest, budget=budget)
                    if present is not None and present in {desc.size, -1}:
                        offset = desc.size
                        break
                resumed = await self._resume_session(ref, desc, key, claim, budget)
                if resumed is None:
                    started = await self._start_session(ref, base, desc, mount_from, explicit)
                    if started is None:
                        await anyio.to_thread.run_sync(claim.forget)
                        tally.mounted += 1
                        self.progress.finish(key, status="mounted")
                        return None
                    location, minimum = started
                    offset = 0
                    await anyio.to_thread.run_sync(claim.save, desc.size, location, 0)
                else:
                    (location, offset), minimum = resumed, 0
                async with self.api.host_slot(location, desc.size):
                    await self._upload(src, ref, desc, location, key, check, claim, budget, offset, minimum)
                break
            except _SessionGone as gone:
                # Closed, purged or never known (another client finished it): a fresh session, not a failure.
                await anyio.to_thread.run_sync(claim.forget)
                sessions_gone += 1
                if sessions_gone > _SESSIONS_GONE_MAX:
                    raise gone.error from None
                self.progress.event("session-gone", key=key, reason=str(gone.error))
                retrying = True
            except (TransportError, RegistryError) as exc:
                status = getattr(exc, "status", None)
                if status == 416:
                    # The session holds other bytes than we thought (a chunk landed after all): start over.
                    await anyio.to_thread.run_sync(claim.forget)
                retryable = isinstance(exc, TransportError) or (
                    status is not None and (status in self.api.retry.statuses or status == 416)
                )
                if not retryable or budget.exhausted:
                    raise
                attempt = budget.take()
                delay = self.api.retry.backoff(attempt)
                self.api.retry_log.record(
                    f"upload of blob {desc.digest.short}",
                    attempt=attempt + 1,
                    delay=delay,
                    reason=str(exc),
                    of=budget.attempts,
                )
                await anyio.sleep(delay)
                retrying = True
        await anyio.to_thread.run_sync(claim.forget)
        return offset

    async def _resume_session(
        self,
        ref: Reference,
        desc: Descriptor,
        key: str,
        claim: UploadClaim,
        budget: RetryBudget | None = None,
    ) -> tuple[str, int] | None:
        """The remembered session of this blob (``claim``'s) and the bytes it holds (GET upload status), or None."""
        state = await anyio.to_thread.run_sync(claim.load)
        if state is None or state.size != desc.size:
            return None
        what = f"upload of blob {desc.digest}"
        try:
            response = await self.api.send(
                "GET", state.location, what=f"status of {what}", expect=(200, 204), budget=budget
            )
        except (NotFoundError, RegistryError):
            # Purged, finished or unknown to this registry: a new session it is.
            await anyio.to_thread.run_sync(claim.forget)
            return None
        held = parse_upload_progress(response.headers.get("Range"))
        if held is None or held > desc.size:
            await anyio.to_thread.run_sync(claim.forget)
            return None
        location = _location(response, what) if response.headers.get("Location") else state.location
        self.progress.event("resume", key=key, offset=held, size=desc.size)
        if held:
            self.progress.advance(key, held)
        return location, held

    async def _start_session(
        self, ref: Reference, base: str, desc: Descriptor, mount_from: Sequence[str], explicit: int
    ) -> tuple[str, int] | None:
        """The upload URL of a new session and the smallest chunk the registry takes (its
        ``OCI-Chunk-Min-Length``, 0 when it names none), or None when a mount made the upload unnecessary.

        The first ``explicit`` sources were named by the user, and their errors are the user's to see; the rest
        were inferred (the source layout's origin), so a refusal there (no pull right on it, a repository gone)
        just means uploading instead.
        """
        what = f"blob {desc.digest}"
        for position, source_repo in enumerate(mount_from):
            if source_repo == ref.repository:
                continue
            url = base + v2.uploads_path(ref.repository, mount=str(desc.digest), **{"from": source_repo})
            try:
                response = await self.api.send(
                    "POST", url, what=f"mount of {what} from {source_repo}", expect=(201, 202)
                )
            except (AuthError, NotFoundError, RegistryError):
                if position < explicit:
                    raise
                continue
            if response.status_code == 201:
                return None
            # 202: the registry opened an upload session instead; use it (and stop trying other sources).
            return _location(response, what), _chunk_min_length(response)
        url = base + v2.uploads_path(ref.repository)
        response = await self.api.send("POST", url, what=f"upload of {what}", expect=(202,))
        return _location(response, what), _chunk_min_length(response)

    async def _upload(
        self,
        src: ImageSource,
        ref: Reference,
        desc: Descriptor,
        location: str,
        key: str,
        check: _SourceCheck,
        claim: UploadClaim,
        budget: RetryBudget,
        offset: int = 0,
        minimum: int = 0,
    ) -> None:
        """Send the blob from ``offset`` (what the session holds already) and close the session.

        ``minimum`` is the registry's smallest chunk (``OCI-Chunk-Min-Length``): chunks are the larger of it and
        ``chunk_size``. A session the registry answers 404 / BLOB_UPLOAD_UNKNOWN for raises ``_SessionGone``.
        """
        what = f"upload of blob {desc.digest}"
        chunk = None if self.chunk_size is None else max(self.chunk_size, minimum)
        try:
            if offset == 0 and (chunk is None or desc.size <= chunk):
                if desc.size == 0:
                    await anyio.to_thread.run_sync(check.confirm)
                url = _with_digest(location, desc.digest)
                response = await self._send_part(
                    "PUT",
                    url,
                    src,
                    desc.digest,
                    0,
                    desc.size,
                    key,
                    check,
                    what=what,
                    headers={"Content-Type": "application/octet-stream"},
                    expect=(201, 204),
                )
                _check_stored(response, desc.digest, what)
                return
            step = chunk if chunk is not None else desc.size
            while offset < desc.size:
                length = min(step, desc.size - offset)
                response = await self._send_part(
                    "PATCH",
                    location,
                    src,
                    desc.digest,
                    offset,
                    length,
                    key,
                    check,
                    what=what,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": chunk_range(offset, length),
                    },
                    expect=(202, 204),
                )
                location = _location(response, what)
                offset += length
                await anyio.to_thread.run_sync(claim.save, desc.size, location, offset)
            # The PUT commits what the session holds: only for bytes that hashed to the digest.
            await anyio.to_thread.run_sync(check.confirm)
            url = _with_digest(location, desc.digest)
            response = await self.api.send("PUT", url, what=what, expect=(201, 204), budget=budget)
        except NotFoundError as exc:
            # A retried close whose first attempt did store the blob (its answer was lost) finds no session too.
            if await self.api.blob_size(ref.registry, ref.repository, desc.digest, budget=budget) == desc.size:
                return
            raise _SessionGone(exc) from None
        _check_stored(response, desc.digest, what)

    async def _send_part(
        self,
        method: str,
        url: str,
        src: ImageSource,
        digest: Digest,
        offset: int,
        length: int,
        key: str,
        check: _SourceCheck,
        *,
        what: str,
        headers: dict[str, str],
        expect: tuple[int, ...],
    ) -> httpx.Response:
        """Send ``length`` bytes of the blob from ``offset``: the request goes through ``RegistryAPI.send`` like any
        (the auth flow, a 307/308 followed, one error mapping; not retried, the caller resumes from the session's
        offset), its body sent from the file in the exchange's worker thread (``BlobFetcher.body_sender``: a
        reused 1 MiB buffer, each piece hashed by ``check`` before it goes)."""
        fetcher = self.api.fetcher
        assert fetcher is not None, "a RegistryAPI that moves blobs has a BlobFetcher"
        cancel = threading.Event()
        counter = [0]
        reported = 0
        outcome: list[httpx.Response] = []

        def count(n: int) -> None:
            counter[0] += n

        sender = fetcher.body_sender(
            lambda: src.open_blob(digest), offset, length, on_bytes=count, cancel=cancel, inspect=check.feed
        )

        async def ticker() -> None:
            nonlocal reported
            try:
                while True:
                    await anyio.sleep(0.1)
                    if counter[0] != reported:
                        self.progress.advance(key, counter[0] - reported)
                        reported = counter[0]
            finally:
                cancel.set()

        async def send(scope: anyio.CancelScope) -> None:
            try:
                async with self._threads:
                    outcome.append(
                        await self.api.send(
                            method,
                            url,
                            what=what,
                            headers={**headers, "Content-Length": str(length)},
                            expect=expect,
                            retry=False,
                            body_sender=sender,
                        )
                    )
            finally:
                scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                tg.start_soon(send, tg.cancel_scope)
        except BaseExceptionGroup as group:
            error = first_error(group)
            if isinstance(error, SourceTruncated):
                raise IntegrityError(f"blob {digest}: {error} ({src.description})") from None
            if isinstance(error, FetchCancelled):
                raise anyio.get_cancelled_exc_class()() from None
            raise error from None
        if counter[0] != reported:
            self.progress.advance(key, counter[0] - reported)
        return outcome[0]


def _location(response: httpx.Response, what: str) -> str:
    value = response.headers.get("Location")
    if not value:
        raise ProtocolError(f"{what}: no Location in the HTTP {response.status_code} from {redact_url(response.url)}")
    return str(response.url.join(value))


def _chunk_min_length(response: httpx.Response) -> int:
    value = (response.headers.get(v2.OCI_CHUNK_MIN_LENGTH_HEADER) or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else 0


def _with_digest(location: str, digest: Digest) -> str:
    return str(httpx.URL(location).copy_merge_params({"digest": str(digest)}))


def _check_stored(response: httpx.Response, digest: Digest, what: str) -> None:
    header = response.headers.get(v2.CONTENT_DIGEST_HEADER)
    if header and Digest.is_valid(header) and Digest.parse(header) != digest:
        raise IntegrityError(f"{what}: the registry stored {header} (at {redact_url(response.url)})")


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
