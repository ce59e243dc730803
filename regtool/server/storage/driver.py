"""The storage-driver interface: a small set of blocking operations on ``/``-separated relative paths.

Drivers are called from worker threads (``anyio.to_thread``), never on the event loop, and must be thread-safe.
Every path goes through ``paths.check_path`` first, so no input can reach outside the driver's root.
Atomicity guarantees every driver gives:

- ``put_content`` replaces a file all at once: a reader sees the old or the new bytes, never a mix;
- ``move`` is atomic and replaces the destination, so content-addressed data can be moved into place by two
  writers at once safely (both hold the same bytes);
- a ``FileWriter`` writes only its own path; ``commit`` makes the bytes durable before the caller moves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from regtool.errors import NotFoundError

__all__ = ["FileInfo", "FileWriter", "ObjectStoreDriver", "PathNotFound", "StorageDriver", "exists"]


class PathNotFound(NotFoundError):
    """The driver path does not exist (or is a file where a directory was expected, or the reverse)."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    is_dir: bool
    modified: float


class FileWriter(Protocol):
    """An open file for writing (or appending); ``size`` is the file's length so far."""

    @property
    def size(self) -> int: ...

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def truncate(self, size: int) -> None:
        """Cut the file back to ``size`` bytes (undo a partial chunk)."""

    def commit(self) -> None:
        """Flush and make the bytes durable (fsync), then close."""

    def close(self) -> None:
        """Close without the durability guarantee (the bytes written so far stay)."""


class StorageDriver(Protocol):
    """What the registry needs from a storage backend."""

    def get_content(self, path: str) -> bytes:
        """The whole file (for small files: links, manifests, metadata). PathNotFound if absent."""

    def put_content(self, path: str, data: bytes) -> None:
        """Create or atomically replace the file with ``data``, creating parent directories."""

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        """An open binary file positioned at ``offset``; the caller closes it. PathNotFound if absent."""

    def writer(self, path: str, *, append: bool = False) -> FileWriter:
        """Open ``path`` for writing (truncating) or appending, creating parent directories."""

    def stat(self, path: str) -> FileInfo:
        """Size and kind of a file or directory. PathNotFound if absent."""

    def list(self, path: str) -> list[str]:
        """Names of the direct children of directory ``path``, unsorted. PathNotFound if absent."""

    def move(self, source: str, destination: str) -> None:
        """Atomically rename ``source`` to ``destination`` (replacing it). PathNotFound if source is absent."""

    def delete(self, path: str) -> None:
        """Remove a file, or a directory and everything under it. PathNotFound if absent."""


@runtime_checkable
class ObjectStoreDriver(StorageDriver, Protocol):
    """A driver over an object store (``s3``): what the handlers offer clients beyond the interface.

    ``chunk_size`` is the store's part size, advertised to clients as the smallest useful upload chunk;
    ``presigned_url`` lets a blob GET or HEAD be redirected to the store itself; ``abandoned_writes`` lets the
    collector find what a killed writer left where no listing shows it.
    """

    chunk_size: int

    def presigned_url(self, path: str, method: str) -> str:
        """A URL on the store answering ``method`` (GET or HEAD) for ``path`` without credentials, for a while."""

    def abandoned_writes(self, path: str, before: float) -> list[tuple[str, str, int]]:
        """Writes under ``path`` begun before ``before`` (epoch seconds) and never finished, which no listing
        shows (a store's multipart uploads): ``(key, id, bytes held)``, for ``abort_upload``."""

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Drop an unfinished write ``abandoned_writes`` named, and the bytes it holds."""


def exists(driver: StorageDriver, path: str) -> bool:
    """Whether ``path`` is in the store now (a file or a directory)."""
    try:
        driver.stat(path)
    except PathNotFound:
        return False
    return True
