"""One upstream fetch of a blob into the cache, shared by every request for it while it runs (``BlobFill``).

The fetch writes the upstream body into a temp file in the store's upload area, hashing it as it goes (in a
worker thread, straight from the pooled connection: ``BlobFetcher.receive``). Requests read that growing file
behind the writer (``FillReader``), so the first client gets its bytes while they are being cached, and a second
client asking for the same blob meanwhile joins the same fetch instead of starting another.

Nothing unverified is passed off as the blob: the last byte of every response cut from a fill is held back until
the whole blob matched its digest and size; on a mismatch the blob never enters the store and each response is
aborted (the connection closes short of its Content-Length), so clients see a failed transfer, not bad bytes.

On object storage an object is readable only once its upload completed, so there the readers wait for the stored
blob and read it from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import BinaryIO

import anyio
import anyio.from_thread
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

    State moves on the event loop only: ``size`` once the upstream answered (``started``), ``written`` as bytes
    land in the temp file, ``verified`` once they matched the digest, then ``done`` (in the store) or ``failed``
    (nothing stored; readers of a verified blob still finish). ``error`` is set when the upstream refused before
    any byte (the responses that waited answer it as an error envelope).
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

    @property
    def finished(self) -> bool:
        return self.done or self.failed or self.error is not None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self) -> None:
        """Wait until the state moves on (more bytes, the head, the end)."""
        await self._changed.wait()

    def _advance(self, count: int) -> None:
        self.written += count
        self._notify()

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
                sink = _Sink(writer, hasher, self._advance)
                await anyio.to_thread.run_sync(fetcher.receive, blob.exchange, sink, limiter=self.threads)
                self._advance(sink.pending)
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
    """Writes and hashes the upstream body in the fetch's worker thread, telling readers about it a megabyte at a
    time (a hand-off to the event loop per socket read would cost more than the copy)."""

    def __init__(self, writer: FileWriter, hasher: DigestVerifier, advance: Callable[[int], None]) -> None:
        self.writer = writer
        self.hasher = hasher
        self.advance = advance
        self.pending = 0

    def __call__(self, piece: memoryview) -> None:
        self.writer.write(piece)
        self.hasher.update(piece)
        self.pending += len(piece)
        if self.pending >= NOTIFY_BYTES:
            # After the bytes are in the file, so a reader told of them can read them.
            anyio.from_thread.run_sync(self.advance, self.pending)
            self.pending = 0


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
