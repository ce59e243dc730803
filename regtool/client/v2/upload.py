"""One blob into a v2 repository: the one upload path push, copy and sync (through copy) take.

``BlobUploader.upload(target, descriptor, body)`` makes a blob present in a repository (protocols.md §4.6):

1. Known present this run (``known_present``), or ``HEAD`` finds it with its size -> skipped.
2. A session this machine remembers (``resume.UploadStateStore``, one owner at a time) is asked how far it got
   (GET upload status) and continued from there; one the registry no longer knows is forgotten.
3. Else with ``mount_from``: ``POST uploads/?mount=<digest>&from=<repo>`` for each; 201 -> mounted. A 202 opens
   an ordinary session, which is used. Otherwise ``POST uploads/`` (202 + Location).
4. One ``PUT <location>?digest=`` with the whole blob (monolithic, up to ``chunk_size``), or ``PATCH`` chunks
   with ``Content-Range`` (at least the registry's ``OCI-Chunk-Min-Length``), each acknowledged offset saved,
   then an empty ``PUT ?digest=``. Each response's Location is the next request's target (relative or absolute,
   with its own query, such as distribution's ``_state``).

A failed attempt (a connection error, a retried status) is retried under one ``RetryBudget`` for all of the blob's
requests: the session is asked how far it got and the rest is sent. A session that vanished (404 /
BLOB_UPLOAD_UNKNOWN) means a fresh one, a few times at most. Bytes that do not match the digest (the source's own
check, or the registry's DIGEST_INVALID / SIZE_INVALID on the closing ``PUT``) are an IntegrityError that also
drops the session and its saved state, so no rerun continues it.

Where the bytes come from is an ``UploadBody``: ``FileBody`` sends a local file from worker threads
(``BlobFetcher.body_sender``: a reused buffer, each piece hashed before it goes; push, and a copy from a v1
source, whose layers are spooled), and a copy between v2 registries relays the source's GET from the same kind of
thread (``copy._RelayBody``); both through ``send_threaded`` and checked by ``SourceCheck``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping, MutableSet, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import httpx

from regtool.client.net.blobfetch import SourceTruncated, run_reported
from regtool.client.net.connections import BodySender
from regtool.client.net.retry import RetryBudget
from regtool.client.net.transport import redact_url
from regtool.client.progress import NullProgress, Progress
from regtool.client.resume import UploadClaim, UploadStateStore
from regtool.client.tasks import LARGE_WEIGHT
from regtool.client.threads import in_thread, shielded
from regtool.client.v2.api import RegistryAPI
from regtool.digest import Digest, DigestVerifier
from regtool.errors import AuthError, IntegrityError, NotFoundError, ProtocolError, RegistryError, TransportError
from regtool.manifest import Descriptor
from regtool.protocol import v2
from regtool.protocol.ranges import chunk_range, parse_upload_progress
from regtool.reference import Reference

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "READ_SIZE",
    "BlobFiles",
    "BlobPlace",
    "BlobUploader",
    "FileBody",
    "Part",
    "SourceCheck",
    "UploadBody",
    "UploadTally",
    "Uploaded",
    "check_stored_digest",
    "chunk_min_length",
    "send_threaded",
    "upload_location",
    "with_digest",
]

# Blobs up to this size go up in one PUT; larger ones in PATCH chunks of this size. Large enough that the extra
# round trips cost nothing measurable; small enough that an interrupted upload of a big layer resumes from a
# recent chunk boundary on registries (distribution among them) that drop a chunk cut mid-body.
DEFAULT_CHUNK_SIZE = 256 << 20
READ_SIZE = 1 << 20
# The smallest ``--chunk-size`` the CLI takes: below it every chunk costs a round trip for next to no bytes (a
# 1 MiB blob in 1-byte chunks is a million requests). A registry's OCI-Chunk-Min-Length can raise it further.
MIN_CHUNK_SIZE = 64 << 10
# How often one blob may find its session gone and start a fresh one: enough for a session another client
# closed plus one purged under us, few enough that a registry forgetting every session fails the upload.
_SESSIONS_GONE_MAX = 2

# (registry, repository, digest): where a blob is known to be present.
BlobPlace = tuple[str, str, Digest]


class BlobFiles(Protocol):
    """Where a ``FileBody`` reads its blob: a local image source (``image.source.ImageSource``), or a copy's spool
    of a v1 source's layers."""

    @property
    def description(self) -> str:
        """A short human name of where the files are, for messages."""
        ...

    def open_blob(self, digest: Digest) -> BinaryIO:
        """Open a blob for reading (from its start)."""
        ...


@dataclass(frozen=True, slots=True)
class Uploaded:
    """How a blob came to be present: ``uploaded`` (``bytes`` sent, from where a session stood), ``mounted``, or
    ``skipped`` (it was there)."""

    status: str
    bytes: int = 0


@dataclass
class UploadTally:
    """What a job's uploads came to."""

    uploaded: int = 0
    skipped: int = 0
    mounted: int = 0
    bytes: int = 0

    def count(self, outcome: Uploaded) -> None:
        self.uploaded += outcome.status == "uploaded"
        self.skipped += outcome.status == "skipped"
        self.mounted += outcome.status == "mounted"
        self.bytes += outcome.bytes


@dataclass(frozen=True, slots=True)
class Part:
    """One upload request: ``length`` bytes of the blob from ``offset``, sent to ``url`` by ``method``."""

    method: str
    url: str
    offset: int
    length: int
    what: str
    headers: Mapping[str, str]
    expect: tuple[int, ...]


class UploadBody(Protocol):
    """Where an upload's bytes come from."""

    async def send(self, api: RegistryAPI, part: Part, advance: Callable[[int], None]) -> httpx.Response:
        """One request (never retried by itself) carrying ``part``; ``advance`` is told of the bytes as they go."""
        ...

    async def confirm(self) -> None:
        """Called before the ``PUT`` that commits the blob: IntegrityError unless its bytes match the digest."""
        ...

    async def aclose(self) -> None:
        """Let go of what the body holds open."""
        ...


class SourceCheck:
    """The digest of one blob, taken from its bytes as they are sent, in blob order.

    ``feed(offset, piece)`` sees each piece before it goes out. Bytes sent again (after a redirect, or a retry from
    an earlier offset) are not hashed twice. Bytes a resumed session already holds are read through ``backfill``
    (a local file, opened anew); without one (a stream from another registry, which cannot be read again cheaply)
    the check gives up on the whole from that hole on, and the registry's digest check on the closing ``PUT``
    verifies it. The piece that completes the blob raises IntegrityError instead of going out when the digest does
    not match, so the registry never receives a whole wrong blob. Pieces arrive from worker threads, hence the lock.
    """

    def __init__(self, desc: Descriptor, description: str, backfill: Callable[[], BinaryIO] | None = None) -> None:
        self._desc = desc
        self._description = description
        self._backfill = backfill
        self._verifier = DigestVerifier(desc.digest.algorithm)
        self._holed = False
        self._lock = threading.Lock()

    def feed(self, offset: int, piece: bytes | memoryview) -> None:
        with self._lock:
            if self._holed:
                return
            end = offset + len(piece)
            position = self._verifier.size
            if end <= position:
                return
            if offset > position:
                if not self._read_to(offset):
                    return
                position = offset
            self._verifier.update(piece[position - offset :])
            if end >= self._desc.size:
                self._verify()

    def confirm(self) -> None:
        """Verify the whole blob (reading what this run did not send, where there is a file to read it from)."""
        with self._lock:
            if self._read_to(self._desc.size):
                self._verify()

    def _read_to(self, offset: int) -> bool:
        """Hash the bytes up to ``offset``; False when they cannot be read (the check is then given up)."""
        position = self._verifier.size
        if position >= offset:
            return True
        if self._backfill is None:
            self._holed = True
            return False
        with self._backfill() as f:
            f.seek(position)
            remaining = offset - position
            while remaining:
                data = f.read(min(READ_SIZE, remaining))
                if not data:
                    raise IntegrityError(
                        f"blob {self._desc.digest}: the source file ended {remaining} bytes early ({self._description})"
                    )
                self._verifier.update(data)
                remaining -= len(data)
        return True

    def _verify(self) -> None:
        actual = self._verifier.digest()
        if self._verifier.size != self._desc.size or actual != self._desc.digest:
            raise IntegrityError(
                f"blob {self._desc.digest}: the source's bytes hash to {actual}, not to the digest the manifest "
                f"names; refused before the registry stored it ({self._description})"
            )


async def send_threaded(
    api: RegistryAPI,
    part: Part,
    advance: Callable[[int], None],
    threads: asyncio.Semaphore,
    sender_for: Callable[[Callable[[int], None], threading.Event], BodySender],
) -> httpx.Response:
    """Send ``part`` with a body written to the request's connection by its worker thread: ``sender_for(count,
    cancel)`` builds the sender, which tells ``count`` of the bytes it sent and stops when ``cancel`` is set
    (``blobfetch.run_reported`` reports them). ``threads`` bounds the worker threads a job's bodies hold at once.
    What the sender raises comes out as it is (SourceTruncated, BodyBroken, ...)."""
    cancel = threading.Event()
    counter = [0]

    def count(n: int) -> None:
        counter[0] += n

    sender = sender_for(count, cancel)

    async def exchange() -> httpx.Response:
        async with threads:
            return await api.send(
                part.method,
                part.url,
                what=part.what,
                headers={**part.headers, "Content-Length": str(part.length)},
                expect=part.expect,
                retry=False,
                body_sender=sender,
            )

    return await run_reported(exchange, lambda: counter[0], advance, cancel)


class FileBody:
    """A blob of a local image source, sent from the file in the exchange's worker thread
    (``BlobFetcher.body_sender``: a reused buffer, each piece hashed before it goes, so a corrupt source is refused
    before the registry commits it). ``threads`` bounds the worker threads all of a job's bodies hold at once."""

    def __init__(self, src: BlobFiles, desc: Descriptor, threads: asyncio.Semaphore) -> None:
        self._src = src
        self._desc = desc
        self._threads = threads
        self._check = SourceCheck(desc, src.description, backfill=lambda: src.open_blob(desc.digest))

    async def send(self, api: RegistryAPI, part: Part, advance: Callable[[int], None]) -> httpx.Response:
        if part.method == "PUT" and part.length == 0:
            # A zero-length blob has no piece to check on its way out.
            await self.confirm()
        fetcher = api.fetcher
        assert fetcher is not None, "a RegistryAPI that moves blobs has a BlobFetcher"
        digest = self._desc.digest

        def sender_for(count: Callable[[int], None], cancel: threading.Event) -> BodySender:
            return fetcher.body_sender(
                lambda: self._src.open_blob(digest),
                part.offset,
                part.length,
                on_bytes=count,
                cancel=cancel,
                inspect=self._check.feed,
            )

        try:
            return await send_threaded(api, part, advance, self._threads, sender_for)
        except SourceTruncated as error:
            raise IntegrityError(f"blob {digest}: {error} ({self._src.description})") from None

    async def confirm(self) -> None:
        await in_thread(self._check.confirm)

    async def aclose(self) -> None:
        return None


class _SessionGone(Exception):
    """The registry no longer knows the upload session (404 / BLOB_UPLOAD_UNKNOWN): open a fresh one."""

    def __init__(self, error: NotFoundError) -> None:
        super().__init__(str(error))
        self.error = error


class BlobUploader:
    """Makes blobs present in v2 repositories through ``api``; one per job (a push, a copy, a sync run).

    ``chunk_size`` None means monolithic uploads. ``known_present`` holds the blobs known to be at a target (filled
    as blobs are found, uploaded or mounted): a job that passes one set to every upload asks about a shared blob
    once. ``jobs`` bounds the worker threads file bodies hold at once (``jobs`` large blobs, or four small ones in
    the place of each, as ``tasks.run_bounded`` schedules them).
    """

    def __init__(
        self,
        api: RegistryAPI,
        *,
        progress: Progress | None = None,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        resume: UploadStateStore | None = None,
        known_present: MutableSet[BlobPlace] | None = None,
        jobs: int = 8,
    ) -> None:
        self.api = api
        self.progress = progress or NullProgress()
        self.chunk_size = chunk_size
        # Upload sessions are remembered on disk so a later run (or retry) continues them.
        self.resume = resume if resume is not None else UploadStateStore()
        self.known_present: MutableSet[BlobPlace] = set() if known_present is None else known_present
        self.threads = asyncio.Semaphore(max(1, jobs) * LARGE_WEIGHT)

    def file_body(self, src: BlobFiles, desc: Descriptor) -> FileBody:
        """A body from ``src``'s file of ``desc``, sharing this uploader's worker threads."""
        return FileBody(src, desc, self.threads)

    async def upload(
        self,
        target: Reference,
        desc: Descriptor,
        body: UploadBody,
        *,
        mount_from: Sequence[str] = (),
        explicit: int = 0,
    ) -> Uploaded:
        """Make ``desc`` present in ``target``'s repository: skipped, mounted, resumed, or uploaded from ``body``.

        Mounts are tried from ``mount_from`` in order; the first ``explicit`` of them were named by the user, whose
        errors are the user's to see; a refusal from the rest (inferred: a source layout's origin, a copy's
        source repository) just means uploading instead.
        """
        key = str(desc.digest)
        place = (target.registry, target.repository, desc.digest)
        self.progress.start(key, desc.digest.short, desc.size)
        try:
            if place in self.known_present:
                outcome = Uploaded("skipped")
            else:
                async with self.api.blob_upload_lock(*place):
                    # Another job of this run may have put it there while this one waited for the lock.
                    if place in self.known_present:
                        outcome = Uploaded("skipped")
                    else:
                        outcome = await self._claimed(target, desc, body, tuple(mount_from), explicit)
                        # Known before the lock goes: the next holder must not ask the registry again.
                        self.known_present.add(place)
        except BaseException:
            self.progress.finish(key, status="failed")
            raise
        finally:
            await body.aclose()
        self.known_present.add(place)
        self.progress.finish(key, status="done" if outcome.status == "uploaded" else outcome.status)
        return outcome

    async def _claimed(
        self, target: Reference, desc: Descriptor, body: UploadBody, mount_from: tuple[str, ...], explicit: int
    ) -> Uploaded:
        # One process at a time continues a blob's saved session (another opens its own).
        key = str(desc.digest)
        claim = await in_thread(self.resume.claim, target.registry, target.repository, key)
        opened: list[str] = []
        try:
            return await self._owned(target, desc, body, claim, mount_from, explicit, opened)
        except IntegrityError:
            # The session may hold bytes of a bad blob: drop it and its state, so that no rerun continues it.
            await shielded(self._drop_session(claim, opened))
            raise
        finally:
            # Interrupted or failed on the way: the session and its state stay for the next run to continue.
            claim.release()

    async def _drop_session(self, claim: UploadClaim, opened: list[str]) -> None:
        await in_thread(claim.forget)
        if opened:
            with contextlib.suppress(Exception):
                await self.api.send("DELETE", opened[-1], what="cancel upload", expect=None, retry=False)

    async def _owned(
        self,
        target: Reference,
        desc: Descriptor,
        body: UploadBody,
        claim: UploadClaim,
        mount_from: tuple[str, ...],
        explicit: int,
        opened: list[str],
    ) -> Uploaded:
        """Skip, mount or upload one blob whose saved session this process owns (``claim``).

        All the requests for the blob share one retry budget (the HEADs, the status GET, the upload's PATCHes
        and PUTs, and the retries of the whole upload here), so the attempts never exceed the policy's.
        """
        key = str(desc.digest)
        budget = RetryBudget(self.api.retry)
        if await self._present(target, desc, budget):
            await in_thread(claim.forget)
            return Uploaded("skipped")
        retrying = False
        sessions_gone = 0
        while True:
            try:
                # A retry: the last attempt may have stored the blob after all (its answer was lost).
                if retrying and await self._present(target, desc, budget):
                    offset = desc.size
                    break
                resumed = await self._resume_session(desc, key, claim, budget)
                if resumed is None:
                    started = await self._start_session(target, desc, mount_from, explicit)
                    if started is None:
                        await in_thread(claim.forget)
                        return Uploaded("mounted")
                    location, minimum = started
                    offset = 0
                    await in_thread(claim.save, desc.size, location, 0)
                else:
                    (location, offset), minimum = resumed, 0
                opened.append(location)
                async with self.api.host_slot(location, desc.size):
                    await self._send(target, desc, body, location, claim, budget, offset, minimum)
                break
            except _SessionGone as gone:
                # Closed, purged or never known (another client finished it): a fresh session, not a failure.
                await in_thread(claim.forget)
                sessions_gone += 1
                if sessions_gone > _SESSIONS_GONE_MAX:
                    raise gone.error from None
                self.progress.event("session-gone", key=key, reason=str(gone.error))
                retrying = True
            except (TransportError, RegistryError) as exc:
                status = getattr(exc, "status", None)
                if status == 416:
                    # The session holds other bytes than we thought (a chunk landed after all): start over.
                    await in_thread(claim.forget)
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
                await asyncio.sleep(delay)
                retrying = True
        await in_thread(claim.forget)
        return Uploaded("uploaded", desc.size - offset)

    async def _present(self, target: Reference, desc: Descriptor, budget: RetryBudget) -> bool:
        size = await self.api.blob_size(target.registry, target.repository, desc.digest, budget=budget)
        # -1: present, the registry named no length.
        return size is not None and size in {desc.size, -1}

    async def _resume_session(
        self, desc: Descriptor, key: str, claim: UploadClaim, budget: RetryBudget
    ) -> tuple[str, int] | None:
        """The remembered session of this blob (``claim``'s) and the bytes it holds (GET upload status), or None."""
        state = await in_thread(claim.load)
        if state is None or state.size != desc.size:
            return None
        what = f"upload of blob {desc.digest}"
        try:
            response = await self.api.send(
                "GET", state.location, what=f"status of {what}", expect=(200, 204), budget=budget
            )
        except (NotFoundError, RegistryError):
            # Purged, finished or unknown to this registry: a new session it is.
            await in_thread(claim.forget)
            return None
        held = parse_upload_progress(response.headers.get("Range"))
        if held is None or held > desc.size:
            await in_thread(claim.forget)
            return None
        location = upload_location(response, what) if response.headers.get("Location") else state.location
        self.progress.event("resume", key=key, offset=held, size=desc.size)
        if held:
            self.progress.advance(key, held)
        return location, held

    async def _start_session(
        self, target: Reference, desc: Descriptor, mount_from: Sequence[str], explicit: int
    ) -> tuple[str, int] | None:
        """The upload URL of a new session and the smallest chunk the registry takes (its
        ``OCI-Chunk-Min-Length``, 0 when it names none), or None when a mount made the upload unnecessary."""
        what = f"blob {desc.digest}"
        base = await self.api.base_url(target.registry)
        for position, source_repo in enumerate(mount_from):
            if source_repo == target.repository:
                continue
            url = base + v2.uploads_path(target.repository, mount=str(desc.digest), **{"from": source_repo})
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
            return upload_location(response, what), chunk_min_length(response)
        url = base + v2.uploads_path(target.repository)
        response = await self.api.send("POST", url, what=f"upload of {what}", expect=(202,))
        return upload_location(response, what), chunk_min_length(response)

    async def _send(
        self,
        target: Reference,
        desc: Descriptor,
        body: UploadBody,
        location: str,
        claim: UploadClaim,
        budget: RetryBudget,
        offset: int,
        minimum: int,
    ) -> None:
        """Send the blob from ``offset`` (what the session holds already) and close the session.

        Chunks are the larger of ``chunk_size`` and the registry's ``minimum`` (``OCI-Chunk-Min-Length``). A
        session the registry answers 404 / BLOB_UPLOAD_UNKNOWN for raises ``_SessionGone``.
        """
        key = str(desc.digest)
        what = f"upload of blob {desc.digest} to {target.repository_ref}"
        chunk = None if self.chunk_size is None else max(self.chunk_size, minimum)

        def advance(n: int) -> None:
            self.progress.advance(key, n)

        octets = {"Content-Type": "application/octet-stream"}
        try:
            if offset == 0 and (chunk is None or desc.size <= chunk):
                put = Part("PUT", with_digest(location, desc.digest), 0, desc.size, what, octets, (201, 204))
                response = await body.send(self.api, put, advance)
            else:
                step = chunk if chunk is not None else desc.size
                while offset < desc.size:
                    length = min(step, desc.size - offset)
                    headers = {**octets, "Content-Range": chunk_range(offset, length)}
                    patch = Part("PATCH", location, offset, length, what, headers, (202, 204))
                    response = await body.send(self.api, patch, advance)
                    location = upload_location(response, what)
                    offset += length
                    await in_thread(claim.save, desc.size, location, offset)
                # The PUT commits what the session holds: only for bytes that hashed to the digest.
                await body.confirm()
                url = with_digest(location, desc.digest)
                response = await self.api.send("PUT", url, what=what, expect=(201, 204), budget=budget)
        except NotFoundError as exc:
            # A retried close whose first attempt did store the blob (its answer was lost) finds no session too.
            size = await self.api.blob_size(target.registry, target.repository, desc.digest, budget=budget)
            if size == desc.size:
                return
            raise _SessionGone(exc) from None
        except RegistryError as exc:
            # DIGEST_INVALID is an IntegrityError already (api.error_for_response); a blob whose length the
            # registry refuses is one too here, where SIZE_INVALID cannot mean a manifest too large.
            if "SIZE_INVALID" in exc.codes:
                raise IntegrityError(f"{what}: the registry refused the whole blob: {exc}") from None
            raise
        check_stored_digest(response, desc.digest, what)


def upload_location(response: httpx.Response, what: str) -> str:
    """Where an upload session goes on: the answer's Location, resolved against its URL."""
    value = response.headers.get("Location")
    if not value:
        raise ProtocolError(f"{what}: no Location in the HTTP {response.status_code} from {redact_url(response.url)}")
    return str(response.url.join(value))


def chunk_min_length(response: httpx.Response) -> int:
    """The smallest chunk the registry takes (OCI-Chunk-Min-Length), 0 when it states none."""
    value = (response.headers.get(v2.OCI_CHUNK_MIN_LENGTH_HEADER) or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else 0


def check_stored_digest(response: httpx.Response, digest: Digest, what: str) -> None:
    """IntegrityError when a closed upload's answer says the registry stored another digest than ``digest``."""
    header = response.headers.get(v2.CONTENT_DIGEST_HEADER)
    if header and Digest.is_valid(header) and Digest.parse(header) != digest:
        raise IntegrityError(f"{what}: the registry stored {header} (at {redact_url(response.url)})")


def with_digest(location: str, digest: Digest) -> str:
    """The session URL that closes an upload as ``digest``."""
    return str(httpx.URL(location).copy_merge_params({"digest": str(digest)}))
