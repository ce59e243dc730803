"""Layers decompressed while they download, straight into the docker-archive a pull writes.

A pull into a docker-archive downloads its blobs into an ``UnpackingStore``, which knows the image. As soon as
the config's blob is committed, the store plans the archive (``archive_writer.plan_archive``: its members and
their order are fixed by the image alone) and opens its ``ArchiveWriter``. Each layer's ``BlobWriter`` is
followed by an unpacker, which decompresses what is appended to the compressed blob (and hashes it for the
diff_id) in a thread of its own, a little behind the download. Where the bytes go:

- the layer whose turn it is (every layer before it is in the archive) writes straight into the archive;
- a layer whose turn has not come writes into a side file. When its turn comes while it still downloads, what
  it holds so far is copied into the archive (kernel-side) and the rest goes straight in; when it is complete
  before its turn, it is copied in whole then.

So the archive grows while the layers download, each layer written into it once; only a layer ahead of its
turn takes a detour through a side file. A layer's place is filled once its diff_id matches the config's, and
whoever fills one takes the next turns (copies the side files of the layers already complete behind it). A
layer's side file is deleted (in a thread) once its place is filled; its compressed blob stays until the pull
ends, so a pull interrupted after some layers were placed resumes without fetching those again.

This is only a head start, never the judge: anything unusual (a resumed partial, a layer compressed with
bzip2, xz or zstd, several gzip members, corrupt data, a wrong diff_id, a full disk) leaves that layer to
``finish``, which decompresses it from its committed blob (``docker_archive.write_layer_from_blob``) with the
same checks and errors as ``write_docker_archive``. ``finish`` fills every place still empty, writes what
follows the layers and renames the archive into place; until then it is a temporary file in the store's
directory, which ``close`` removes (as does the next store opened on the directory, after a crash). A layer
the image names twice goes through a side file, copied into each place. ``finish`` given a ``stop`` event
checks it between layers and before the rename: a cancelled pull never publishes the archive.

Example::

    store = UnpackingStore(work_dir, manifest, ["app:1"], Path("app.tar"))
    try:
        ...download every blob into ``store``...
        store.finish()
    finally:
        store.close()
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from isal import isal_zlib

from regtool.digest import Digest, DigestVerifier
from regtool.image.archive_writer import ArchiveWriter, plan_archive
from regtool.image.blobstore import BlobStore, BlobWriter
from regtool.image.compression import Compression, sniff
from regtool.image.growing_blob import GrowingBlob

if TYPE_CHECKING:
    from collections.abc import Sequence

    from regtool.manifest import Manifest

__all__ = ["UNPACK_DIR", "Stopped", "UnpackingStore"]

UNPACK_DIR = ".regtool-unpack"
# Enough for every compression magic ``sniff`` knows.
_MAGIC_LEN = 6
# Output per decompress call: a small blob that inflates hugely still goes out in pieces of this size. Larger
# pieces raised the pull's peak RSS, smaller ones cost more CPU in calls (BENCHMARKS.md).
_OUT_CHUNK = 256 << 10
# What the unpacker's thread reads of the partial at a time.
_READ_CHUNK = 1 << 20
# The diff_id an unpacker computes; a config naming another algorithm has its layers decompressed by ``finish``.
_DIFF_ID_ALGORITHM = "sha256"


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Stopped("stopped before the archive was complete")


@dataclass(frozen=True, slots=True)
class _SideFile:
    """A layer's uncompressed tar, complete in a side file: its path, size and diff_id."""

    path: Path
    size: int
    diff_id: Digest


@dataclass(slots=True)
class _Layer:
    """One layer blob of the image: its places in the archive, and how far it got."""

    places: list[int] = field(default_factory=list)
    unpacker: _Unpacker | None = None
    side: _SideFile | None = None
    filled: int = 0


class Stopped(Exception):
    """``finish`` was told to stop (its caller was cancelled): the archive is not renamed into place."""


# The archive's writer is held by the thread filling places from side files (or by ``finish``), not by a layer.
_FILLING = object()


class UnpackingStore(BlobStore):
    """A scratch BlobStore (no fsyncs) that writes the docker-archive of ``image`` while its blobs arrive."""

    def __init__(self, root: Path, image: Manifest, repo_tags: Sequence[str], out_path: Path) -> None:
        super().__init__(root, durable=False)
        self.unpack_dir = self.root / UNPACK_DIR
        # A temporary archive and side files that a killed pull left: nothing in them is reused.
        shutil.rmtree(self.unpack_dir, ignore_errors=True)
        self._image = image
        self._repo_tags = tuple(repo_tags)
        self._out_path = Path(out_path)
        self._lock = threading.Lock()
        self._layers: dict[Digest, _Layer] = {}
        for index, layer in enumerate(image.layers):
            self._layers.setdefault(layer.digest, _Layer()).places.append(index)
        self._writer: ArchiveWriter | None = None
        # Who may write into the archive now: the unpacker of the layer at its turn, _FILLING, or nobody (None).
        self._holder: object | None = None
        self._closed = False
        self._discard = ThreadPoolExecutor(1, thread_name_prefix="archive-discard")
        self._discarded: list[Future[None]] = []
        if image.config is not None and self.has(image.config.digest):  # a pull resumed in this directory
            self._config_arrived()

    # -- what the pull calls -------------------------------------------------------------------------------

    def open_writer(self, digest: Digest, size: int | None, *, resume: bool = True) -> BlobWriter:
        writer = super().open_writer(digest, size, resume=resume)
        if self._image.config is not None and digest == self._image.config.digest:
            writer.follower = _ConfigWatch(self)
        # A resumed partial's first bytes were never seen here: that layer is read from its blob by ``finish``.
        elif digest in self._layers and not writer.offset:
            unpacker = _Unpacker(self, digest, writer.partial_path)
            if self._started(unpacker):
                writer.follower = unpacker
        return writer

    def finish(self, stop: threading.Event | None = None) -> Path:
        """Fill every place still empty (from side files, else from the committed blobs), write the rest and
        rename the archive into place. Call once every writer is closed. The errors of ``write_docker_archive``;
        Stopped once ``stop`` is set (seen between layers and before the rename)."""
        from regtool.image.docker_archive import write_layer_from_blob

        if self._writer is None:
            self._open_archive()
        writer = self._writer
        assert writer is not None
        with self._lock:
            self._holder = _FILLING
        while writer.placed < len(writer.plan.layers):
            _check(stop)
            digest = writer.plan.layers[writer.placed].digest
            side = self._layers[digest].side
            if side is not None and self._unpacked_fits(writer.placed):
                self._fill_from(writer, digest, side)
            else:
                write_layer_from_blob(writer, self)
                self._filled(digest)
        _check(stop)
        path = writer.commit()
        self._writer = None
        self._discard.shutdown(wait=True)
        for done in self._discarded:
            done.result()
        return path

    def close(self) -> None:
        """Remove the temporary archive and the side files (after a failure; nothing left after ``finish``)."""
        with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.discard()
        self._discard.shutdown(wait=True)
        shutil.rmtree(self.unpack_dir, ignore_errors=True)

    # -- turns ---------------------------------------------------------------------------------------------

    def _config_arrived(self) -> None:
        """Plan the archive and start on it; a config that cannot be planned is left for ``finish`` to report."""
        try:
            opened = self._open_archive()
        except Exception:
            return
        if opened:
            self._take_turns()

    def _open_archive(self) -> bool:
        """Plan the archive and open its writer, held by the caller; False when there already is one."""
        assert self._image.config is not None
        config = self.read_bytes(self._image.config.digest)
        plan = plan_archive(self._image, config, self._repo_tags, self._out_path)
        self.unpack_dir.mkdir(parents=True, exist_ok=True)
        writer = ArchiveWriter(plan, tmp_dir=self.unpack_dir)
        with self._lock:
            opened = self._writer is None and not self._closed
            if opened:
                self._writer = writer
                self._holder = _FILLING
        if not opened:
            writer.discard()
        return opened

    def _started(self, unpacker: _Unpacker) -> bool:
        """A layer's download starts; False when its tar is already complete here (a second writer)."""
        with self._lock:
            layer = self._layers[unpacker.digest]
            if layer.side is not None or layer.filled:
                return False
            layer.unpacker = unpacker
            if self._holder is None and self._at_turn(unpacker.digest):
                self._holder = unpacker
                unpacker.promoted = True
        return True

    def _at_turn(self, digest: Digest) -> bool:
        """Whether the layer ``digest`` may go straight into the archive now (called under the lock)."""
        writer = self._writer
        if writer is None or writer.placed == len(writer.plan.layers):
            return False
        layer = self._layers[digest]
        return (
            writer.plan.layers[writer.placed].digest == digest
            and len(layer.places) == 1
            and self._unpacked_fits(writer.placed)
        )

    def _unpacked_fits(self, index: int) -> bool:
        """Whether an unpacker's diff_id can stand for the config's at place ``index`` (the same algorithm)."""
        assert self._writer is not None
        return self._writer.plan.diff_ids[index].algorithm == _DIFF_ID_ALGORITHM

    def _take_turns(self) -> None:
        """Called by the holder of the writer: fill places from complete side files, then hand the writer to
        the layer at its turn if it is downloading, or to nobody (its unpacker, or ``finish``, takes it)."""
        while True:
            with self._lock:
                writer = self._writer
                if writer is None or writer.placed == len(writer.plan.layers):
                    self._holder = None
                    return
                index = writer.placed
                digest = writer.plan.layers[index].digest
                layer = self._layers[digest]
                side = layer.side
                if side is None or not self._unpacked_fits(index):
                    self._holder = None
                    if layer.unpacker is not None and self._at_turn(digest):
                        self._holder = layer.unpacker
                        layer.unpacker.promoted = True
                    return
            try:
                self._fill_from(writer, digest, side)
            except Exception:  # ``finish`` fills this place again and reports what went wrong
                with self._lock:
                    self._holder = None
                return

    def _fill_from(self, writer: ArchiveWriter, digest: Digest, side: _SideFile) -> None:
        fd = os.open(side.path, os.O_RDONLY)
        try:
            writer.begin_layer()
            writer.copy_from(fd, side.size)
        finally:
            os.close(fd)
        writer.end_layer(side.diff_id)
        self._filled(digest)

    def _filled(self, digest: Digest) -> None:
        """One place of ``digest`` is in the archive; after its last one, its side file goes."""
        with self._lock:
            layer = self._layers[digest]
            layer.filled += 1
            if layer.filled < len(layer.places) or self._closed:
                return
            side = layer.side
            if side is not None:
                # Deleting a large file frees its cached pages, which takes the kernel a while: done in a thread
                # of its own, while the download goes on.
                self._discarded.append(self._discard.submit(side.path.unlink, missing_ok=True))

    # -- what the unpackers report -------------------------------------------------------------------------

    def _straight_in(self, unpacker: _Unpacker, diff_id: Digest) -> None:
        """An unpacker that wrote its layer straight into the archive is done: the place is filled, next turn."""
        writer = self._writer
        assert writer is not None
        try:
            writer.end_layer(diff_id)
        except Exception:  # a wrong diff_id: ``finish`` decompresses the blob again and raises the error
            self._gave_up(unpacker)
            return
        with self._lock:
            self._layers[unpacker.digest].unpacker = None
            self._holder = _FILLING
        self._filled(unpacker.digest)
        self._take_turns()

    def _in_side_file(self, unpacker: _Unpacker, side: _SideFile) -> None:
        """An unpacker's layer is complete in its side file: its place is filled when its turn comes."""
        with self._lock:
            layer = self._layers[unpacker.digest]
            if layer.unpacker is not unpacker:
                mine = False
                stale = True
            else:
                stale = False
                layer.unpacker = None
                layer.side = side
                # Its turn came meanwhile (the writer was handed to it), or came while nobody held the writer.
                mine = self._holder is unpacker or (
                    self._holder is None and self._writer is not None and self._next_is(unpacker.digest)
                )
                if mine:
                    self._holder = _FILLING
        if stale:
            side.path.unlink(missing_ok=True)
        elif mine:
            self._take_turns()

    def _next_is(self, digest: Digest) -> bool:
        writer = self._writer
        assert writer is not None
        return writer.placed < len(writer.plan.layers) and writer.plan.layers[writer.placed].digest == digest

    def _gave_up(self, unpacker: _Unpacker) -> None:
        with self._lock:
            layer = self._layers[unpacker.digest]
            if layer.unpacker is unpacker:
                layer.unpacker = None
            if self._holder is unpacker:
                self._holder = None


class _ConfigWatch:
    """Follows the config's writer: once the config is committed, the archive can be planned."""

    def __init__(self, store: UnpackingStore) -> None:
        self._store = store

    def feed(self, data: memoryview) -> None:
        pass

    def end(self, committed: bool) -> None:
        if committed:
            self._store._config_arrived()


class _Unpacker:
    """Follows one layer's writer: sniffs, decompresses (gzip, or none) and hashes, into a side file or, once
    ``promoted`` (its turn has come), straight into the archive; gives up quietly on anything unusual.

    The work is done in a thread of its own, which follows the blob's partial file as the download appends to it
    (a ``GrowingBlob``; the pages are still in memory): the download's thread only counts the bytes, so
    downloading (and hashing the blob) and decompressing (and hashing the tar) run on two cores, and no chunk is
    copied to hand it over.
    """

    def __init__(self, store: UnpackingStore, digest: Digest, partial: Path) -> None:
        self._store = store
        self.digest = digest
        # Set by the store under its lock, read here without it: once True it stays True.
        self.promoted = False
        self._direct = False
        self._done = False
        self._side_fd: int | None = None
        self._side_path = store.unpack_dir / f"{digest.encoded}.{secrets.token_hex(6)}.tar"
        self._side_size = 0
        self._head = b""
        self._kind: Compression | None = None
        self._inflate: isal_zlib.Decompress | None = None
        self._hash = DigestVerifier(_DIFF_ID_ALGORITHM)
        # Its result is where the committed blob is (a reader that missed the partial, renamed, opens that).
        self._blob: GrowingBlob[Path] = GrowingBlob(f"layer {digest}")
        self._blob.begin_at(partial)
        self._broken = False
        self._thread: threading.Thread | None = None

    def feed(self, data: memoryview) -> None:
        if self._done:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._follow, name=f"unpack-{self.digest.short}", daemon=True)
            self._thread.start()
        self._blob.wrote(len(data))

    def _follow(self) -> None:
        """The thread: decompress the blob's bytes as they are written, until the writer ends."""
        view = memoryview(bytearray(_READ_CHUNK))
        try:
            with self._blob.follow(0) as reader:
                while n := reader.readinto(view):
                    self._feed(bytes(view[:n]) if self._kind is None else view[:n])
        except Exception:  # ``end`` gives up: ``finish`` meets the same bytes again and reports them
            self._broken = True

    def close(self, committed: bool = False) -> None:
        """Let the thread read to the end of what was written (the committed blob) or stop it, and wait for it."""
        if committed:
            committed_path = self._store.path(self.digest)
            self._blob.finish(committed_path, committed_path)
        else:
            self._blob.fail(_Unusual("the blob was not committed"))
        if self._thread is not None:
            self._thread.join()

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
        # In slices: every call bounded by _OUT_CHUNK copies the input it left into ``unconsumed_tail``, which
        # for a whole 1 MiB piece cost more CPU than inflating it (BENCHMARKS.md).
        view = memoryview(data)
        for at in range(0, len(view), _OUT_CHUNK):
            pending: bytes | memoryview = view[at : at + _OUT_CHUNK]
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
        self._hash.update(data)
        if self.promoted and not self._direct:
            self._go_straight_in()
        if self._direct:
            writer = self._store._writer
            assert writer is not None
            writer.write(data)
            return
        fd = self._open_side()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        self._side_size += len(data)

    def _open_side(self) -> int:
        if self._side_fd is None:
            self._store.unpack_dir.mkdir(parents=True, exist_ok=True)
            self._side_fd = os.open(self._side_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        return self._side_fd

    def _go_straight_in(self) -> None:
        """The layer's turn has come: what the side file holds goes into the archive, and from here on the rest."""
        writer = self._store._writer
        assert writer is not None
        writer.begin_layer()
        if self._side_fd is not None:
            writer.copy_from(self._side_fd, self._side_size)
            self._drop_side()
        self._direct = True

    def end(self, committed: bool) -> None:
        if self._done:
            return
        self.close(committed)
        if not committed or self._broken:
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
            if self.promoted and not self._direct:
                self._go_straight_in()
            if not self._direct:
                self._open_side()
                assert self._side_fd is not None
                os.close(self._side_fd)
                self._side_fd = None
        except Exception:  # as in feed
            self._give_up()
            return
        self._done = True
        if self._direct:
            self._store._straight_in(self, self._hash.digest())
        else:
            self._store._in_side_file(self, _SideFile(self._side_path, self._side_size, self._hash.digest()))

    def _give_up(self) -> None:
        self._done = True
        self._drop_side()
        self._store._gave_up(self)

    def _drop_side(self) -> None:
        if self._side_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._side_fd)
            self._side_fd = None
        self._side_path.unlink(missing_ok=True)


class _Unusual(Exception):
    """A layer the fast path leaves to ``finish``."""
