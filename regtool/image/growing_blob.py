"""A blob file one thread writes while others read it as it grows.

A docker-archive push gzips each layer while the gzip output is already on its way to the registry: the compressor
thread writes the file, an upload thread follows it. The file is the hand-over between the two (not a queue in
memory), so the compressor never waits for the network, memory stays flat whatever the gap between them, and the
whole compressed blob is left on disk for a retry or a resumed upload to read again without compressing twice.

Example::

    blob = GrowingBlob("layer 1")
    # compressor thread: with blob.begin(f, path) as out: out.write(data) ...; then blob.finish(result)
    # (or blob.fail(exc))
    with blob.follow(0) as reader:  # upload thread
        while n := reader.readinto(buffer): ...
    blob.result()  # the compressor's result, or its error
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

__all__ = ["BlobAborted", "GrowingBlob", "GrowingReader"]

T = TypeVar("T")

# How often a waiting reader looks at its cancel event: Ctrl-C or a failed sibling is seen within this.
_POLL_SECONDS = 0.2


class BlobAborted(Exception):
    """The blob will not be finished: the job that wanted it was abandoned."""


class GrowingBlob(Generic[T]):
    """A file written front to back by one thread (``begin``, then ``finish(result)`` or ``fail(error)``).

    ``finish`` may name the file's new path when the writer moved it (into a content-addressed store): readers
    keep the descriptors they opened, and new ones open the new path.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._path: Path | None = None
        self._cond = threading.Condition()
        self._written = 0
        self._started = False
        self._ended = False
        self._result: T | None = None
        self._error: BaseException | None = None
        self._aborted = False

    # The writer's side.

    def begin(self, f: BinaryIO, path: Path) -> GrowingWriter:
        """The writer starts on ``f``, the empty file at ``path``: a writer that appends through its descriptor
        (unbuffered: what is written is at once there for readers)."""
        self.begin_at(path)
        return GrowingWriter(self, f)

    def begin_at(self, path: Path) -> None:
        """The writer starts on the empty file at ``path`` and appends to it by its own means, telling ``wrote``
        (a pull's blob writer, which a layer's unpacker follows)."""
        with self._cond:
            if self._aborted:
                raise BlobAborted(self._name)
            self._path = path
            self._started = True
            self._cond.notify_all()

    def wrote(self, n: int) -> None:
        """``n`` more bytes are in the file, for the readers."""
        with self._cond:
            if self._aborted:
                raise BlobAborted(self._name)
            self._written += n
            self._cond.notify_all()

    def finish(self, result: T, path: Path | None = None) -> None:
        """All bytes are written; ``path`` is where the file is now when it was moved."""
        with self._cond:
            if path is not None:
                self._path = path
            self._result = result
            self._ended = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self._error = error
            self._ended = True
            self._cond.notify_all()

    def abort(self) -> None:
        """Stop the writer at its next write and every reader at its next wait."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    # The readers' side.

    @property
    def name(self) -> str:
        """What the blob is, for messages (a layer's name in its archive)."""
        return self._name

    @property
    def done(self) -> bool:
        """True when the writer has ended (finished or failed)."""
        with self._cond:
            return self._ended

    def wait_started(self, cancel: threading.Event | None = None) -> None:
        """Block until the writer has begun (or ended)."""
        self._wait(lambda: self._started or self._ended, cancel)

    def result(self, cancel: threading.Event | None = None) -> T:
        """Block until the writer has ended; its result, or its error raised."""
        self._wait(lambda: self._ended, cancel)
        with self._cond:
            if self._error is not None:
                raise self._error
            assert self._result is not None
            return self._result

    def available(self, offset: int, cancel: threading.Event | None = None) -> int:
        """Block until bytes past ``offset`` exist or the writer has ended; how many bytes there are past it
        (0: the end). The writer's error is raised here."""
        self._wait(lambda: self._written > offset or self._ended, cancel)
        with self._cond:
            if self._error is not None:
                raise self._error
            return self._written - offset

    def _wait(self, ready: Callable[[], bool], cancel: threading.Event | None) -> None:
        with self._cond:
            while not ready():
                if self._aborted or (cancel is not None and cancel.is_set()):
                    raise BlobAborted(self._name)
                self._cond.wait(_POLL_SECONDS)

    @contextlib.contextmanager
    def follow(self, offset: int, cancel: threading.Event | None = None) -> Iterator[GrowingReader]:
        """A reader of the file from ``offset``, blocking for bytes not written yet, ending where the file ends."""
        self.wait_started(cancel)
        with self._cond:
            path = self._path
        if path is None:  # the writer failed before it began (raised here), or the blob ended with no file
            self.result(cancel)
            raise BlobAborted(f"{self._name}: no file")
        try:
            f = io.FileIO(path, "rb")
        except FileNotFoundError:
            # Moved by the writer just now: it names the new path when it finishes, right after the move.
            self.result(cancel)
            with self._cond:
                path = self._path
            assert path is not None
            f = io.FileIO(path, "rb")
        with f:
            yield GrowingReader(self, f.fileno(), offset, cancel)


class GrowingWriter:
    """The writer's end: ``write`` appends and tells the readers; a file object for ``gzip_stream``."""

    def __init__(self, blob: GrowingBlob[Any], f: BinaryIO) -> None:
        self._blob = blob
        self._f = f

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        fd = self._f.fileno()
        while view:
            n = os.write(fd, view)
            view = view[n:]
        self._blob.wrote(len(data))
        return len(data)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> GrowingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class GrowingReader:
    """Reads a growing blob through its own descriptor, from an offset, waiting for bytes the writer owes."""

    def __init__(self, blob: GrowingBlob[Any], fd: int, offset: int, cancel: threading.Event | None) -> None:
        self._blob = blob
        self._fd = fd
        self.position = offset
        self._cancel = cancel

    def readinto(self, buffer: memoryview) -> int:
        """Up to ``len(buffer)`` bytes; 0 only at the end of a finished blob."""
        ready = self._blob.available(self.position, self._cancel)
        if not ready:
            return 0
        n = os.preadv(self._fd, [buffer[: min(ready, len(buffer))]], self.position)
        self.position += n
        return n
