"""One upstream fetch of a blob into the cache, shared by every request for it while it runs (``BlobFill``).

The fetch writes the upstream body into a temp file in the store's upload area, hashing it as it goes (in a
worker thread, straight from the pooled connection: ``BlobFetcher.receive``). Requests read that growing file
behind the writer (``FillReader``), so the first client gets its bytes while they are being cached, and a second
client asking for the same blob meanwhile joins the same fetch instead of starting another.

A zero-copy response follows the writer from its own sending thread (``BlobFill.follow``): the fetch thread tells
it of every piece under a lock, never waiting for the event loop, which hears of the progress only a megabyte at
a time (for chunked readers) and of the state changes. A round trip through the event loop for each piece, and a
new ``sendfile`` transfer for each, cost more CPU than the piece's copy.

Nothing unverified is passed off as the blob: the last byte of every response cut from a fill is held back until
the whole blob matched its digest and size; on a mismatch the blob never enters the store and each response is
aborted (the connection closes short of its Content-Length), so clients see a failed transfer, not bad bytes.

On object storage an object is readable only once its upload completed, so there the readers wait for the stored
blob and read it from the store.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import BinaryIO

import anyio
import anyio.to_thread

from regtool.digest import Digest, DigestVerifier
from regtool.errors import RegtoolError
from regtool.protocol.errcodes import ErrorCode
from regtool.server.errors import ApiError
from regtool.server.proxy.upstream import Upstream, upstream_error
from regtool.server.storage.driver import FileWriter, ObjectStoreDriver, PathNotFound
from regtool.server.storage.registry import Registry

__all__ = ["BlobFill", "FillFailed", "FillReader"]

logger = logging.getLogger("regtool.server")

NOTIFY_BYTES = 1 << 20


class FillFailed(Exception):
    """The fill ended without a verified blob; responses reading it are aborted."""


class BlobFill:
    """The fetch of ``digest`` from ``upstream``'s ``name``, and what readers need to follow it.

    State moves on the event loop: ``size`` once the upstream answered (``started``), ``verified`` once the bytes
    matched the digest, then ``done`` (in the store) or ``failed`` (nothing stored; readers of a verified blob still
    finish). ``error`` is set when the upstream refused before any byte (the responses that waited answer it as an
    error envelope). ``written``, the bytes in the temp file, is moved by the fetch's thread under ``_grown``.
    """

    def __init__(
        self,
        registry: Registry,
        upstream: Upstream,
        name: str,
        digest: Digest,
        threads: anyio.CapacityLimiter,
    ) -> None:
        self.registry = registry
        self.upstream = upstream
        self.name = name
        self.digest = digest
        # The fetch holds a worker thread for the whole body: its own limiter keeps fills from taking every thread
        # the requests' short storage calls need.
        self.threads = threads
        # A file being written can be read behind its writer on a file system (or in memory); an object store
        # shows an object only once its upload completed, so there the readers wait for the stored blob.
        self.readable_while_filling = not isinstance(registry.driver, ObjectStoreDriver)
        self.size: int | None = None
        self.written = 0
        self.temp_path: str | None = None
        self.started = False
        self.verified = False
        self.done = False
        self.failed = False
        self.error: ApiError | None = None
        self._changed = anyio.Event()
        # ``written`` and the wake-ups of the threads sending it, moved by the fetch thread. Never taken on the event
        # loop: a thread preempted while holding it (a busy machine) would stall every request for that long.
        self._grown = threading.Condition()
        self._unannounced = 0  # bytes written since the event loop was last told

    @property
    def finished(self) -> bool:
        return self.done or self.failed or self.error is not None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _grew(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        """In the fetch's thread, once ``count`` more bytes are in the temp file (so a reader told can read them)."""
        with self._grown:
            self.written += count
            self._grown.notify_all()
        self._unannounced += count
        if self._unannounced >= NOTIFY_BYTES:
            self._unannounced = 0
            loop.call_soon_threadsafe(self._notify)

    async def changed(self) -> None:
        """Wait until the state moves on (more bytes, the head, the end)."""
        await self._changed.wait()

    def follow(self, offset: int, timeout: float) -> int:
        """How far the temp file may be read, for a thread sending it as it grows (``zerocopy.Follow``): waits up
        to ``timeout`` seconds while it holds nothing past ``offset``; FillFailed once the blob cannot verify.

        Woken by every write; the end of the fetch (rare next to a write) is seen at the next timed wake-up."""
        with self._grown:
            if self.written <= offset and not self.finished and not self.verified:
                self._grown.wait(timeout)
            if not self.verified and (self.failed or self.error is not None):
                raise FillFailed(f"blob {self.digest} did not arrive intact from the upstream")
            return self.written

    async def run(self) -> None:
        """Fetch, verify and store the blob; never raises (the outcome is in the state)."""
        what = f"blob {self.digest}"
        try:
            await self._fetch()
        except ApiError as exc:
            self.error = exc
        except RegtoolError as exc:
            if self.started:
                logger.warning("proxy: %s from %s not cached: %s", what, self.upstream.registry, exc)
                self.failed = True
            else:
                self.error = upstream_error(exc, what, ErrorCode.BLOB_UNKNOWN)
        except Exception as exc:
            # A body cut short, a storage fault: the readers are aborted and nothing is stored.
            reason = str(exc) or type(exc).__name__
            logger.warning("proxy: %s from %s not cached: %s", what, self.upstream.registry, reason)
            if self.started:
                self.failed = True
            else:
                self.error = ApiError(ErrorCode.UNAVAILABLE, f"{what}: upstream unavailable ({reason})")
        finally:
            if not self.finished:  # cancelled: the server is stopping
                self.failed = True
            if self.temp_path is not None and not self.done:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.registry.blobs.discard, self.temp_path)
            self._notify()

    async def _fetch(self) -> None:
        async with self.upstream.open_blob(self.name, self.digest) as blob:
            fetcher = blob.api.fetcher
            assert fetcher is not None, "the upstream client moves blob bodies through its fetcher"
            self.size = blob.size
            self.temp_path, writer = await anyio.to_thread.run_sync(self.registry.blobs.temp_writer)
            self.started = True
            self._notify()
            try:
                hasher = DigestVerifier(self.digest.algorithm)
                loop = asyncio.get_running_loop()
                sink = _Sink(writer, hasher, lambda count: self._grew(count, loop))
                await anyio.to_thread.run_sync(fetcher.receive, blob.exchange, sink, limiter=self.threads)
                self._notify()
                hasher.verify(self.digest, self.size)
                # Readers may finish now; the store's fsync and rename need not hold up their last byte.
                self.verified = True
                self._notify()
                await anyio.to_thread.run_sync(self._store, writer)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(writer.close)
                raise
            self.size = hasher.size
            self.done = True

    def _store(self, writer: FileWriter) -> None:
        # fsync, then the atomic rename: the blob appears whole or not at all, then the links that name it.
        assert self.temp_path is not None
        writer.commit()
        self.registry.blobs.ingest(self.temp_path, self.digest)
        self.registry.blobs.discard(self.temp_path)
        self.registry.link_blob(self.upstream.local_name(self.name), self.digest)


class _Sink:
    """Writes and hashes the upstream body in the fetch's worker thread. Sending threads hear of every piece at
    once; the event loop a megabyte at a time, without the fetch waiting for it (a blocking hand-off per piece
    would stall the fetch behind the loop)."""

    def __init__(self, writer: FileWriter, hasher: DigestVerifier, grew: Callable[[int], None]) -> None:
        self.writer = writer
        self.hasher = hasher
        self.grew = grew

    def __call__(self, piece: memoryview) -> None:
        self.writer.write(piece)
        # Told before the hash, so a sending thread moves the bytes on meanwhile (the response's last byte still
        # waits for the digest).
        self.grew(len(piece))
        self.hasher.update(piece)


class FillReader:
    """Reads ``[offset, end)`` of a blob being filled, waiting for bytes and holding back the last one."""

    def __init__(self, fill: BlobFill, offset: int, end: int) -> None:
        self.fill = fill
        self.position = offset
        self.end = end
        self._file: BinaryIO | None = None
        self._file_offset = 0  # where the open file's position is (an object store's reader cannot seek)

    async def ready(self) -> int:
        """How many bytes from ``position`` may be sent now, waiting until some may (0 at the end); FillFailed
        when the blob did not verify."""
        fill = self.fill
        while True:
            if self.position >= self.end:
                return 0
            streaming = fill.readable_while_filling
            if not (fill.verified if streaming else fill.done) and (fill.failed or fill.error is not None):
                raise FillFailed(f"blob {fill.digest} did not arrive intact from the upstream")
            if streaming:
                # The last byte only once the whole blob is verified: a client never completes a bad blob.
                ready = self.end if fill.verified else min(fill.written, self.end - 1)
            else:
                ready = self.end if fill.done else self.position
            if self.position < ready:
                return ready - self.position
            await fill.changed()

    async def read(self, count: int) -> bytes:
        """``count`` bytes from ``position`` (which ``ready`` allowed), moving past them."""
        chunk = await anyio.to_thread.run_sync(self._read, self.position, count)
        self.position += len(chunk)
        return chunk

    async def descriptor_file(self) -> BinaryIO | None:
        """The open file, for ``sendfile(2)`` from ``position`` on; None when the store's files have no descriptor."""
        if self._file is None:
            self._file = await anyio.to_thread.run_sync(self._open, self.position)
            self._file_offset = self.position
        try:
            self._file.fileno()
        except (OSError, ValueError):  # in-memory storage: io.UnsupportedOperation
            return None
        return self._file

    def _read(self, offset: int, count: int) -> bytes:
        data = b""
        for _attempt in range(3):
            if self._file is None:
                self._file = self._open(offset + len(data))
                self._file_offset = offset + len(data)
            elif self._file_offset != offset + len(data):
                # sendfile(2) sent from an offset and left the file's position where it was.
                self._file.seek(offset + len(data))
                self._file_offset = offset + len(data)
            piece = self._file.read(count - len(data))
            self._file_offset += len(piece)
            data += piece
            if len(data) == count:
                return data
            # A store whose readers are snapshots (in memory) ends where the file ended when it was opened.
            self._file.close()
            self._file = None
        raise OSError(f"blob {self.fill.digest}: the cached file ended at byte {offset + len(data)}")

    def _open(self, offset: int) -> BinaryIO:
        fill = self.fill
        if fill.readable_while_filling and not fill.done and fill.temp_path is not None:
            try:
                return fill.registry.driver.reader(fill.temp_path, offset)
            except PathNotFound:
                pass  # moved into the store a moment ago
        return fill.registry.blobs.open(fill.digest, offset)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
