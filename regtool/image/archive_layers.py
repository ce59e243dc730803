"""A docker-archive's layers gzipped in worker threads, each into a ``GrowingBlob`` that readers may follow.

``docker save`` writes a plain tar, where each member is a byte range of the file: then every layer is read
through its own file handle and compressed in its own thread, one per core (ISA-L and the hashes release the GIL).
A compressed archive can only be read front to back, so its layers are compressed one after the other in one
thread. Either way ``start`` returns at once: a push uploads each layer while it is being compressed, and a reader
of the store waits for ``GrowingBlob.result``.

Each blob is written into the store's staging area, then adopted under its digest. No fsync: the store is this
run's scratch directory, removed when the push ends, crash or not.
"""

from __future__ import annotations

import contextlib
import io
import lzma
import os
import tarfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING

from regtool.errors import ImageFormatError
from regtool.image.compression import GzipResult, gzip_stream, open_decompressed
from regtool.image.growing_blob import GrowingBlob

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from regtool.image.blobstore import BlobStore

__all__ = ["LayerCompression", "archive_errors"]

_CHUNK = 1 << 20


@contextlib.contextmanager
def archive_errors(archive: Path) -> Iterator[None]:
    """Errors of reading a damaged archive (a cut or corrupt tar, its outer compression) -> ImageFormatError.

    OS errors with an errno (disk full writing the recompressed layers, permissions) are not the archive's fault
    and pass through; the decompressors' own ``OSError("Invalid data stream")`` and the like have none.
    """
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ImageFormatError(
            f"docker-archive {archive}: truncated or corrupt ({exc or type(exc).__name__})"
        ) from None
    except OSError as exc:
        if exc.errno is not None:
            raise
        raise ImageFormatError(f"docker-archive {archive}: truncated or corrupt ({exc})") from None


class LayerCompression:
    """Gzips the layer members ``names`` of ``archive`` into ``store``; ``blobs[i]`` is layer ``i``'s.

    ``regular`` are the members' headers when the archive is a plain tar whose layers are ordinary files (each
    read through its own handle, in parallel); otherwise None, and ``open_member(i)`` opens layer ``i`` from the
    tar, front to back in one thread.
    """

    def __init__(
        self,
        archive: Path,
        names: list[str],
        store: BlobStore,
        *,
        regular: list[tarfile.TarInfo] | None,
        open_member: Callable[[int], IO[bytes]],
    ) -> None:
        self.archive = archive
        self.names = names
        self.store = store
        self._regular = regular
        self._open_member = open_member
        self.blobs: list[GrowingBlob[GzipResult]] = [GrowingBlob(f"layer {name}") for name in names]
        self._pool: ThreadPoolExecutor | None = None

    def start(self, known: Mapping[int, GzipResult] | None = None) -> None:
        """Start compressing (returns at once); the layers are begun in order. ``known`` layers are not
        compressed: their blobs end at once with the given result (and no file)."""
        known = known or {}
        for index, result in known.items():
            self.blobs[index].finish(result)
        todo = [index for index in range(len(self.names)) if index not in known]
        parallel = self._regular is not None and len(todo) > 1
        workers = min(len(todo), os.cpu_count() or 1) if parallel else 1
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="regtool-gzip")
        if parallel:
            for index in todo:
                self._pool.submit(self._compress, index, self._open_slice)
        elif todo:
            self._pool.submit(self._compress_in_order, todo)

    def results(self) -> list[GzipResult]:
        """Wait for every layer; the first failure in layer order is raised."""
        return [blob.result() for blob in self.blobs]

    def close(self) -> None:
        """Stop what is still running and wait for the threads (so nothing writes into a removed directory)."""
        for blob in self.blobs:
            blob.abort()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _compress_in_order(self, todo: list[int]) -> None:
        for position, index in enumerate(todo):
            if not self._compress(index, self._open_member):
                # A sequential tar cannot skip a broken member: the layers after it fail with it.
                error = ImageFormatError(f"docker-archive {self.archive}: not read past layer {self.names[index]}")
                for later in todo[position + 1 :]:
                    self.blobs[later].fail(error)
                return

    def _open_slice(self, index: int) -> IO[bytes]:
        assert self._regular is not None
        member = self._regular[index]
        raw = self.archive.open("rb")
        raw.seek(member.offset_data)
        where = f"docker-archive {self.archive}: layer {self.names[index]}"
        return io.BufferedReader(_Slice(raw, member.size, where), _CHUNK)

    def _compress(self, index: int, open_member: Callable[[int], IO[bytes]]) -> bool:
        """Compress layer ``index`` into its blob; False when it failed (the blob holds the error)."""
        blob = self.blobs[index]
        name = self.names[index]
        tmp: Path | None = None
        try:
            with archive_errors(self.archive), open_member(index) as member:
                out, tmp = self.store.new_temp_file()
                with (
                    blob.begin(out, tmp) as writer,
                    out,
                    open_decompressed(member, what=f"docker-archive {self.archive}: layer {name}") as plain,
                ):
                    result = gzip_stream(plain, writer)
            final = self.store.adopt(tmp, result.digest)
        except BaseException as exc:  # the blob's readers raise it
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            blob.fail(exc)
            return False
        blob.finish(result, final)
        return True


class _Slice(io.RawIOBase):
    """``size`` bytes of ``raw`` from its current position: one member of a plain tar; short data is an error."""

    def __init__(self, raw: io.BufferedReader, size: int, where: str) -> None:
        self._raw = raw
        self._left = size
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        out = memoryview(b).cast("B")[: self._left]
        if not out:
            return 0
        n = self._raw.readinto(out)
        if not n:
            raise ImageFormatError(f"{self._where}: the archive ends {self._left} bytes into the layer")
        self._left -= n
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()
