"""Layers decompressed while their blobs are written: what a pull into a docker-archive keeps beside its blobs.

A docker-archive holds every layer uncompressed. Decompressing (and hashing the diff_id) only after the download
would add a second pass over every layer once the network is done; instead the pull's scratch store is an
``UnpackingStore``, which follows each chosen layer's ``BlobWriter``: every chunk appended to the compressed blob
is decompressed at once, in the writer's thread, into a side file beside it and hashed there. When the blob
commits (its compressed digest verified) the side file is an ``UnpackedLayer``: a tar whose size and sha256 are
known, which ``write_docker_archive`` copies into the archive kernel-side.

This is only a head start, never the judge: anything unusual (a resumed partial, a layer compressed with bzip2,
xz or zstd, several gzip members, corrupt data, a full disk) drops the side file, and the archive writer then
reads that layer from its committed blob with ``open_decompressed`` as before, with the same checks and errors.
The diff_id is checked against the config when the archive is written, for both ways alike.

Example::

    store = UnpackingStore(work_dir, layers={layer.digest for layer in manifest.layers})
    ...download every blob into ``store``...
    write_docker_archive(store, manifest, config, tags, out, unpacked=store.unpacked())
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from isal import isal_zlib

from regtool.digest import Digest, DigestVerifier
from regtool.image.blobstore import BlobStore, BlobWriter
from regtool.image.compression import Compression, sniff

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

__all__ = ["UNPACK_DIR", "UnpackedLayer", "UnpackingStore"]

UNPACK_DIR = ".regtool-unpack"
# Enough for every compression magic ``sniff`` knows.
_MAGIC_LEN = 6
# Output per decompress call: a small blob that inflates hugely still goes out in pieces of this size. Larger
# pieces raised the pull's peak RSS, smaller ones cost more CPU in calls (BENCHMARKS.md).
_OUT_CHUNK = 256 << 10


@dataclass(frozen=True, slots=True)
class UnpackedLayer:
    """A layer's uncompressed tar in a side file: its path, size and sha256 (to compare with the diff_id)."""

    path: Path
    size: int
    diff_id: Digest


class UnpackingStore(BlobStore):
    """A scratch BlobStore (no fsyncs) that decompresses the blobs of ``layers`` while they are written."""

    def __init__(self, root: Path, *, layers: Collection[Digest]) -> None:
        super().__init__(root, durable=False)
        self._layers = frozenset(layers)
        self.unpack_dir = self.root / UNPACK_DIR
        self._lock = threading.Lock()
        self._unpacked: dict[Digest, UnpackedLayer] = {}

    def open_writer(self, digest: Digest, size: int | None, *, resume: bool = True) -> BlobWriter:
        writer = super().open_writer(digest, size, resume=resume)
        # A resumed partial's first bytes were never seen here: that layer is read from its blob afterwards.
        if digest in self._layers and not writer.offset:
            try:
                writer.follower = _Unpacker(self, digest)
            except OSError:
                pass  # no side file: the archive writer decompresses this layer from its blob
        return writer

    def unpacked(self) -> Mapping[Digest, UnpackedLayer]:
        """The layers whose side files are complete, by compressed digest."""
        with self._lock:
            return dict(self._unpacked)

    def _done(self, digest: Digest, layer: UnpackedLayer) -> None:
        with self._lock:
            previous = self._unpacked.get(digest)
            self._unpacked[digest] = layer
        if previous is not None:  # a second writer of the same blob: same content, one side file is enough
            previous.path.unlink(missing_ok=True)


class _Unpacker:
    """Follows one writer: sniffs, decompresses (gzip, or none) and hashes into a side file; gives up quietly."""

    def __init__(self, store: UnpackingStore, digest: Digest) -> None:
        self._store = store
        self._digest = digest
        store.unpack_dir.mkdir(parents=True, exist_ok=True)
        self._path = store.unpack_dir / f"{digest.encoded}.{secrets.token_hex(6)}.tar"
        self._fd: int | None = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._head = b""
        self._kind: Compression | None = None
        self._inflate: isal_zlib.Decompress | None = None
        self._hash = DigestVerifier("sha256")

    def feed(self, data: memoryview) -> None:
        if self._fd is None:
            return
        try:
            self._feed(bytes(data) if self._kind is None else data)
        except Exception:  # the archive writer meets the same bytes again and reports them
            self._give_up()

    def _feed(self, data: bytes | memoryview) -> None:
        if self._kind is None:
            self._head += data
            if len(self._head) < _MAGIC_LEN:
                return
            self._start(self._head)
            data, self._head = self._head, b""
        if self._inflate is None:
            self._emit(data)
            return
        if self._inflate.eof:
            raise _Unusual("data after the gzip member")
        pending: bytes | memoryview = data
        while pending:
            self._emit(self._inflate.decompress(pending, _OUT_CHUNK))
            pending = self._inflate.unconsumed_tail
        if self._inflate.unused_data:
            raise _Unusual("a second gzip member")

    def _start(self, head: bytes) -> None:
        self._kind = sniff(head)
        if self._kind is Compression.GZIP:
            self._inflate = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
        elif self._kind is not Compression.NONE:
            raise _Unusual(f"{self._kind.value} layer")

    def _emit(self, data: bytes | memoryview) -> None:
        assert self._fd is not None
        self._hash.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def end(self, committed: bool) -> None:
        if self._fd is None:
            return
        if not committed:
            self._give_up()
            return
        try:
            if self._kind is None:  # a blob shorter than any magic: stored as it is, like ``open_decompressed``
                self._start(self._head)
                self._feed(self._head)
            if self._inflate is not None:
                while self._inflate.unconsumed_tail:
                    self._emit(self._inflate.decompress(self._inflate.unconsumed_tail, _OUT_CHUNK))
                self._emit(self._inflate.flush())
                if not self._inflate.eof:
                    raise _Unusual("gzip data cut short")
            os.close(self._fd)
        except Exception:  # as in feed
            self._give_up()
            return
        self._fd = None
        self._store._done(self._digest, UnpackedLayer(self._path, self._hash.size, self._hash.digest()))

    def _give_up(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._path.unlink(missing_ok=True)


class _Unusual(Exception):
    """A layer the fast path leaves to ``open_decompressed``."""
