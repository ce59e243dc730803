"""Download one blob into a BlobStore, verified, resumable and retried.

``BlobDownloader.download(url, descriptor, store)`` opens a BlobWriter (resuming a partial left by an earlier run
with ``Range: bytes=<offset>-``; a registry that answers 200 instead of 206 makes it start over), streams the
body into it, and commits: the blob appears in the store only when its size and digest match the descriptor.

The body is read in a worker thread (``BlobFetcher``) with ``readinto`` on a reused 1 MiB buffer and hashed +
written there (see blobfetch.py for why).

Errors: a Content-Length other than the expected size, too many bytes, or a digest mismatch raise
IntegrityError naming the blob and the URL (and the partial is deleted); a body cut short is retried (resuming)
and, once the retries are spent, raises TransportError and keeps the partial for the next run. Error statuses
go through the retry policy
and then map like every other API error (404 -> NotFoundError, 401/403 -> AuthError, ...).
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass

import httpx

from regtool.client.net.blobfetch import BlobFetcher, BodyBroken, ResponseHead, run_reported
from regtool.client.net.connections import exchange_of
from regtool.client.net.retry import RetryBudget
from regtool.client.net.transport import redact_url
from regtool.client.progress import NullProgress, Progress
from regtool.client.tasks import LARGE_WEIGHT
from regtool.client.threads import in_thread, shielded
from regtool.client.v2.api import RegistryAPI
from regtool.client.v2.rangefetch import RangeNotSupported, SplitDownload, SplitPolicy
from regtool.errors import IntegrityError, ProtocolError, TransportError
from regtool.image.blobstore import BlobStore, BlobWriter
from regtool.manifest import Descriptor
from regtool.protocol.ranges import parse_content_range, range_request

__all__ = ["BlobDownloader"]

WRITEBACK_EVERY = 8 << 20


@dataclass
class _Box:
    """The current writer (a restart replaces it) and the running byte count, shared with the thread."""

    writer: BlobWriter
    count: int = 0


class BlobDownloader:
    """Downloads blobs through a RegistryAPI; ``jobs`` bounds the fetch threads."""

    def __init__(
        self, api: RegistryAPI, *, jobs: int = 8, progress: Progress | None = None, split: SplitPolicy | None = None
    ) -> None:
        self.api = api
        self.progress = progress or NullProgress()
        self._threads = asyncio.Semaphore(max(1, jobs) * LARGE_WEIGHT)
        self.split = split

    async def download(self, url: str, desc: Descriptor, store: BlobStore) -> int:
        """Fetch ``desc`` from ``url`` into ``store``; returns the bytes transferred (0 when it was complete)."""
        key = str(desc.digest)
        self.progress.start(key, desc.digest.short, desc.size)
        writer = await in_thread(lambda: store.open_writer(desc.digest, desc.size, resume=True))
        box = _Box(writer)
        if writer.offset:
            self.progress.advance(key, writer.offset)
        # A partial left by an earlier run may itself be damaged (a crash, a disk error): when the finished blob
        # does not verify after a resume, it is fetched once more from byte 0 before the registry is blamed.
        resumed_from = writer.offset
        transferred = 0
        # One budget for every retry of this blob: its GET's statuses and transport errors (retried inside
        # ``RegistryAPI.send``) and the bodies cut short (retried here, resuming), so they never multiply.
        budget = RetryBudget(self.api.retry)
        try:
            while True:
                transferred += await self._split(url, desc, box, key)
                while True:
                    try:
                        async with self.api.host_slot(url, desc.size):
                            transferred += await self._attempt(url, desc, store, box, key, budget)
                        break
                    except _Broken as broken:
                        transferred += broken.received
                        if budget.exhausted:
                            # A network failure, not bad content: the partial stays for a resume.
                            raise TransportError(
                                f"blob {desc.digest}: body cut short from {redact_url(url)} "
                                f"({box.writer.offset} of {desc.size} bytes): {broken.reason}; "
                                "the bytes received are kept, run the command again to resume"
                            ) from None
                        attempt = budget.take()
                        delay = self.api.retry.backoff(attempt)
                        self.api.retry_log.record(
                            f"GET {redact_url(url)}",
                            attempt=attempt + 1,
                            delay=delay,
                            reason=broken.reason,
                            of=budget.attempts,
                        )
                        await asyncio.sleep(delay)
                    except TransportError as exc:
                        if not box.writer.offset:
                            raise
                        raise TransportError(
                            f"{exc}; the bytes received are kept, run the command again to resume"
                        ) from None
                try:
                    await in_thread(box.writer.commit)
                    break
                except IntegrityError as exc:
                    if not resumed_from:
                        raise IntegrityError(f"{exc} (from {redact_url(url)})") from None
                    self.api.retry_log.record(
                        f"GET {redact_url(url)} from byte 0",
                        attempt=1,
                        delay=0.0,
                        reason=f"the blob resumed from a local partial of {resumed_from} bytes did not verify",
                        of=2,
                    )
                    resumed_from = 0
                    box.writer = await in_thread(lambda: store.open_writer(desc.digest, desc.size, resume=False))
        except BaseException as exc:
            integrity = isinstance(exc, IntegrityError)
            # Reported first: a cancellation arriving during the abort is raised when it ends, past this block.
            self.progress.finish(key, status="failed")
            await shielded(in_thread(lambda: box.writer.abort(keep_partial=not integrity)))
            raise
        self.progress.finish(key, status="done")
        return transferred

    async def _split(self, url: str, desc: Descriptor, box: _Box, key: str) -> int:
        """A large rest goes over several Range connections (rangefetch.py) when allowed."""
        fetcher = self.api.fetcher
        if self.split is None or fetcher is None or not self.split.applies(desc.size - box.writer.offset, url):
            return 0
        split = SplitDownload(
            self.api, fetcher, url, desc, box.writer, parts=self.split.parts, progress=self.progress, key=key
        )
        try:
            got = await split.run()
        except RangeNotSupported:
            return 0  # one stream, from wherever the writer is
        box.count += got
        return got

    async def _attempt(
        self, url: str, desc: Descriptor, store: BlobStore, box: _Box, key: str, budget: RetryBudget
    ) -> int:
        if box.writer.offset == desc.size:
            return 0
        return await self._threaded(url, desc, store, box, key, budget)

    # -- checks ---------------------------------------------------------------------

    def _begin(self, head: ResponseHead, desc: Descriptor, store: BlobStore, box: _Box, offset: int) -> int:
        """Check the response head; restart the writer when a Range was ignored. Returns the new offset."""
        if offset and head.status == 200:
            box.writer.abort(keep_partial=False)
            box.writer = store.open_writer(desc.digest, desc.size, resume=False)
            box.count -= offset
            offset = 0
        elif head.status == 206:
            value = head.headers.get("content-range")
            served = parse_content_range(value)
            if served is None or served[0] != offset:
                raise ProtocolError(
                    f"blob {desc.digest}: asked for bytes from {offset}, got Content-Range {value!r} "
                    f"from {redact_url(head.url)}"
                )
        elif head.status != 200:
            raise ProtocolError(f"blob {desc.digest}: unexpected HTTP {head.status} from {redact_url(head.url)}")
        expected = desc.size - offset
        length = head.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) != expected):
            raise IntegrityError(
                f"blob {desc.digest}: Content-Length {length} but {expected} bytes expected from {redact_url(head.url)}"
            )
        return offset

    # -- threaded ---------------------------------------------------------------------------------------

    async def _threaded(
        self, url: str, desc: Descriptor, store: BlobStore, box: _Box, key: str, budget: RetryBudget
    ) -> int:
        """GET the blob (from the writer's offset) through the API like any request, then move the body in a
        worker thread straight from the connection (``BlobFetcher.receive``)."""
        fetcher = self.api.fetcher
        assert fetcher is not None, "a RegistryAPI that moves blobs has a BlobFetcher"
        offset = box.writer.offset
        headers = {"Range": range_request(offset)} if offset else None
        what = f"blob {desc.digest}"
        response = await self.api.send(
            "GET", url, what=what, headers=headers, expect=(200, 206), stream=True, budget=budget, keep_body=True
        )
        try:
            return await self._receive(response, fetcher, desc, store, box, key, offset)
        finally:
            await shielded(response.aclose())

    async def _receive(
        self,
        response: httpx.Response,
        fetcher: BlobFetcher,
        desc: Descriptor,
        store: BlobStore,
        box: _Box,
        key: str,
        offset: int,
    ) -> int:
        exchange = exchange_of(response)
        if exchange is None:
            raise ProtocolError(f"blob {desc.digest}: the response did not come over regtool's connections")
        url = str(response.url)
        head = ResponseHead(response.status_code, {k.lower(): v for k, v in response.headers.items()}, url)
        cancel = threading.Event()
        start_count = box.count
        sink = _Sink(box)
        await in_thread(lambda: self._begin(head, desc, store, box, offset))

        def run() -> int:
            try:
                return fetcher.receive(exchange, sink.write, cancel=cancel)
            finally:
                sink.close()

        async def fetch() -> int:
            try:
                # Cancelled (Ctrl-C), the read under way is cut at once, not left to the read timeout.
                return await in_thread(run, limiter=self._threads, on_cancel=exchange.interrupt)
            except BodyBroken as exc:
                raise _Broken(box.count - start_count, exc.reason) from None

        def advance(n: int) -> None:
            self.progress.advance(key, n)

        try:
            return await run_reported(fetch, lambda: box.count, advance, cancel)
        except IntegrityError as error:
            if "(from " in str(error):
                raise
            raise IntegrityError(f"{error} (from {redact_url(url)})") from None


class _Sink:
    """Writes into the box's current writer (a restart replaces it), and every WRITEBACK_EVERY bytes asks the
    kernel to start writing the partial's dirty pages to disk (``posix_fadvise(DONTNEED)`` starts writeback).

    Otherwise nothing reaches the disk before the commit's fsync, which then waits for the whole blob while other
    writers compete for the device (BENCHMARKS.md, "early writeback", has the measurement)."""

    def __init__(self, box: _Box) -> None:
        self._box = box
        self._pending = 0
        self._fd: int | None = None
        self._fd_for: BlobWriter | None = None

    def write(self, data: memoryview) -> None:
        writer = self._box.writer
        writer.write(data)
        self._box.count += len(data)
        self._pending += len(data)
        # A scratch store's blobs are read back and deleted at once: writing them to disk would be wasted.
        if self._pending >= WRITEBACK_EVERY and writer.store.durable:
            self._pending = 0
            self._writeback(writer)

    def _writeback(self, writer: BlobWriter) -> None:
        try:
            if self._fd_for is not writer:
                self.close()
                self._fd = os.open(writer.partial_path, os.O_RDONLY)
                self._fd_for = writer
            if self._fd is not None:
                os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except (OSError, AttributeError):
            # Best effort: no posix_fadvise on this platform, or the partial was renamed away.
            pass

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._fd_for = None


class _Broken(Exception):
    def __init__(self, received: int, reason: str) -> None:
        super().__init__(reason)
        self.received = received
        self.reason = reason
