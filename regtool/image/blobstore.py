"""A content-addressed blob directory with verified, atomic, resumable writes.

Layout::

    <root>/blobs/<alg>/<hex>                 committed blobs, byte-exact under their digest
    <root>/.regtool-staging/<alg>-<hex>.partial    the resumable partial of a blob being written
    <root>/.regtool-staging/<alg>-<hex>.<rand>.partial   a second, concurrent writer of the same blob
    <root>/.regtool-staging/tmp-<rand>.partial     content whose digest is known only at the end (new_temp_file)

Readers only ever see ``blobs/``: a blob appears there by an atomic rename after its digest and size were
verified and its bytes fsynced. A partial left by an interrupted run is picked up by the next writer of the
same digest (``resume=True``): its bytes are re-hashed and ``BlobWriter.offset`` says where to continue, e.g.
with an HTTP ``Range`` request.

Concurrency: a writer holds an exclusive ``flock`` on its partial. A second writer of the same digest (another
thread or process) cannot take that lock, so it writes a private partial with a unique name instead; whichever
commits first places the blob, and a later commit of the same verified content is a no-op.

``tidy()`` removes the staging directory once it is empty, so a finished OCI layout holds only the spec's files.

The writer is synchronous on purpose: the client drives it from worker threads with large (1 MiB) buffers so
hashing and disk writes stay off the event loop.

Example::

    store = BlobStore(Path("layout"))
    with store.open_writer(digest, size) as writer:
        fetch_from(writer.offset, into=writer.write)   # resume from the partial's end
        writer.commit()
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol, TypeVar

from regtool.digest import Digest, DigestVerifier
from regtool.errors import IntegrityError, NotFoundError, UsageError
from regtool.files import fsync_dir

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

__all__ = ["STAGING_DIR", "BlobFollower", "BlobStore", "BlobWriter"]

_T = TypeVar("_T")

STAGING_DIR = ".regtool-staging"
_CHUNK = 1 << 20


class BlobStore:
    """A content-addressed directory ``root/blobs/<alg>/<hex>`` with a hidden staging area for writes."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = Path(root)
        # A scratch store (the work layout of a pull into a docker-archive, removed once the archive is
        # written) skips the fsyncs: its blobs are read back at once, and whatever a crash leaves is checked
        # again when it is read (diff_ids), so durability would only cost a flush of every byte.
        self.durable = durable
        self.blobs_dir = self.root / "blobs"
        self.staging_dir = self.root / STAGING_DIR

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    def path(self, digest: Digest) -> Path:
        """Where the blob ``digest`` lives (whether or not it is there)."""
        return self.blobs_dir / digest.algorithm / digest.encoded

    def has(self, digest: Digest) -> bool:
        """True when the committed blob exists."""
        return self.path(digest).is_file()

    def size(self, digest: Digest) -> int | None:
        """The size of the committed blob, or None when it is absent."""
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def digests(self) -> Iterator[Digest]:
        """Every committed blob's digest (files whose names are not valid digests are ignored)."""
        if not self.blobs_dir.is_dir():
            return
        for alg_dir in sorted(self.blobs_dir.iterdir()):
            if not alg_dir.is_dir():
                continue
            for entry in sorted(alg_dir.iterdir()):
                text = f"{alg_dir.name}:{entry.name}"
                if entry.is_file() and Digest.is_valid(text):
                    yield Digest.parse(text)

    def open_reader(self, digest: Digest) -> BinaryIO:
        """Open the committed blob for reading; NotFoundError when it is absent."""
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} not found in {self.root}") from None

    def read_bytes(self, digest: Digest, *, max_size: int = 16 << 20) -> bytes:
        """The whole blob, for small blobs (manifests, configs); UsageError when it exceeds ``max_size``."""
        with self.open_reader(digest) as f:
            data = f.read(max_size + 1)
        if len(data) > max_size:
            raise UsageError(f"blob {digest} in {self.root} is larger than {max_size} bytes")
        return data

    def put_bytes(self, digest: Digest | None, data: bytes) -> Digest:
        """Store a small blob and return its digest; when ``digest`` is given the bytes must match it."""
        expected = digest if digest is not None else Digest.of(data)
        if self.has(expected) and self.size(expected) == len(data):
            actual = Digest.of(data, expected.algorithm)
            if actual != expected:
                raise IntegrityError(f"blob {expected}: digest mismatch: content hashes to {actual}")
            return expected
        with self.open_writer(expected, len(data), resume=False) as writer:
            writer.write(data)
            writer.commit()
        return expected

    def open_writer(self, digest: Digest, size: int | None, *, resume: bool = True) -> BlobWriter:
        """Start (or, with ``resume``, continue) writing the blob ``digest`` of ``size`` bytes (None: unknown).

        ``BlobWriter.offset`` is the number of bytes already kept from an earlier partial (0 when not resuming).
        """
        if size is not None and size < 0:
            raise UsageError(f"blob {digest}: negative size {size}")
        canonical = self.staging_dir / f"{digest.algorithm}-{digest.encoded}.partial"
        fd = self._in_staging(lambda: _open_locked(canonical))
        if fd is not None:
            return BlobWriter(self, digest, size, canonical, fd, resume=resume, shared=True)
        private = self.staging_dir / f"{digest.algorithm}-{digest.encoded}.{secrets.token_hex(8)}.partial"
        fd = self._in_staging(lambda: os.open(private, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644))
        return BlobWriter(self, digest, size, private, fd, resume=False, shared=False)

    def _in_staging(self, create: Callable[[], _T]) -> _T:
        """Run ``create`` (which makes a file in the staging directory), making the directory first.

        Another writer sharing the store (a process, or a thread of this one) may ``tidy()`` the empty directory
        between the mkdir and the create, or within the mkdir itself: ``Path.mkdir(exist_ok=True)`` raises
        FileExistsError when the directory it found existing is gone by the time it looks again.
        """
        for _ in range(2):
            with contextlib.suppress(FileExistsError):
                self.staging_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                return create()
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        return create()

    def new_temp_file(self) -> tuple[BinaryIO, Path]:
        """A fresh private file in the staging area, for content whose digest is known only once written.

        Pair it with ``adopt`` once the digest is computed (or unlink the path to drop it).
        """
        path = self.staging_dir / f"tmp-{secrets.token_hex(8)}.partial"
        fd = self._in_staging(lambda: os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644))
        return os.fdopen(fd, "w+b"), path

    def adopt(self, path: Path, digest: Digest) -> Path:
        """Move ``path`` (a closed, fsynced file the caller hashed to ``digest``) into the store.

        Re-hashing is the caller's job; an already present blob of the same size wins and ``path`` is removed
        (one of another size is damaged, and is replaced).
        """
        target = self.path(digest)
        if _same_size(target, path.stat().st_size):
            path.unlink(missing_ok=True)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        fsync_dir(target.parent)
        return target

    def tidy(self) -> None:
        """Remove the staging directory when nothing is left in it (call once no writer is open)."""
        with contextlib.suppress(OSError):
            self.staging_dir.rmdir()

    def remove(self, digest: Digest) -> bool:
        """Delete a committed blob; True when it existed."""
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True


def _same_size(path: Path, size: int) -> bool:
    """Whether ``path`` is a regular file of ``size`` bytes."""
    try:
        return path.is_file() and path.stat().st_size == size
    except OSError:
        return False


def _open_locked(path: Path) -> int | None:
    """Open ``path`` (creating it) under an exclusive flock, or None when another writer holds it.

    Re-checks after locking that the name still points at the locked file: a writer that committed renamed it
    away, and a file renamed into blobs/ must never be written again.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


class BlobFollower(Protocol):
    """Sees a blob's bytes as its writer appends them, in the writer's thread (``layer_unpack`` decompresses a
    layer this way while it downloads); ``end`` says whether the blob committed (verified) or was aborted."""

    def feed(self, data: memoryview) -> None: ...

    def end(self, committed: bool) -> None: ...


class BlobWriter:
    """Writes one blob into the store's staging area; ``commit`` verifies and publishes it.

    Sync and not thread-safe itself: one thread drives one writer. Use it as a context manager: leaving the
    block without a commit aborts, keeping the partial for a later resume unless the error was an IntegrityError.
    """

    def __init__(
        self,
        store: BlobStore,
        digest: Digest,
        size: int | None,
        partial: Path,
        fd: int,
        *,
        resume: bool,
        shared: bool,
    ) -> None:
        self.store = store
        self.digest = digest
        self.size = size
        self.partial_path = partial
        self._shared = shared
        self._done = False
        self._file: IO[bytes] = os.fdopen(fd, "r+b", buffering=0)
        self._verifier = DigestVerifier(digest.algorithm)
        # Set right after opening, before any write (it sees nothing of a resumed partial).
        self.follower: BlobFollower | None = None
        try:
            self._load_partial(resume)
        except BaseException:
            self._file.close()
            raise

    def _load_partial(self, resume: bool) -> None:
        existing = os.fstat(self._file.fileno()).st_size
        if not resume or (self.size is not None and existing > self.size):
            self._file.truncate(0)
            return
        self._file.seek(0)
        while chunk := self._file.read(_CHUNK):
            self._verifier.update(chunk)
        self._file.seek(0, os.SEEK_END)

    @property
    def offset(self) -> int:
        """Bytes in the partial so far: what an earlier run left (right after opening) plus what was written."""
        return self._verifier.size

    @property
    def closed(self) -> bool:
        return self._done

    def write(self, buf: bytes | bytearray | memoryview) -> None:
        """Append ``buf``; IntegrityError at once when the blob grows past its expected size."""
        if self._done:
            raise ValueError(f"write to a finished writer of blob {self.digest}")
        if self.size is not None and self._verifier.size + len(buf) > self.size:
            raise IntegrityError(f"blob {self.digest}: size mismatch: more than the expected {self.size} bytes")
        view = memoryview(buf)
        while view:
            written = self._file.write(view)
            if written is None:  # pragma: no cover - only for non-blocking files
                continue
            view = view[written:]
        self._verifier.update(buf)
        if self.follower is not None:
            self.follower.feed(memoryview(buf))

    def commit(self) -> Path:
        """Verify digest and size, fsync, and atomically rename into ``blobs/``; returns the blob's path.

        On a mismatch the partial is deleted and IntegrityError names the digest. When the blob is already
        there at its size (another writer committed first) this is a no-op apart from removing the partial.
        """
        if self._done:
            raise ValueError(f"commit of a finished writer of blob {self.digest}")
        try:
            self._verifier.verify(self.digest, self.size)
        except IntegrityError:
            self.abort(keep_partial=False)
            raise
        target = self.store.path(self.digest)
        try:
            if self.store.durable:
                os.fsync(self._file.fileno())
            # Another writer committed the same verified content first; a file of another size there is damaged
            # (cut, or written over) and the verified one replaces it.
            if _same_size(target, self._verifier.size):
                self.partial_path.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.partial_path, target)
                if self.store.durable:
                    fsync_dir(target.parent)
        except BaseException:
            self.abort(keep_partial=False)
            raise
        self._done = True
        self._file.close()
        if self.follower is not None:
            self.follower.end(committed=True)
        return target

    def abort(self, keep_partial: bool = True) -> None:
        """Stop writing; keep the partial for a later resume, or delete it. Idempotent."""
        if self._done:
            return
        self._done = True
        if self.follower is not None:
            self.follower.end(committed=False)
        try:
            if keep_partial and self._shared:
                with contextlib.suppress(OSError):
                    os.fsync(self._file.fileno())
            else:
                self.partial_path.unlink(missing_ok=True)
        finally:
            self._file.close()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done:
            self.abort(keep_partial=not isinstance(exc, IntegrityError))

    def __del__(self) -> None:
        # A writer dropped without commit/abort: keep the partial, release the lock.
        if not getattr(self, "_done", True):
            with contextlib.suppress(Exception):
                self._file.close()
