"""The filesystem storage driver: paths map to files under one root directory.

Small files are written to a temp file in the same directory, fsynced, and renamed over the target; the
directory is fsynced after each rename, so a crash (even ``kill -9`` or power loss) leaves either the old or
the new file. Temp files start with ``.``, which no valid driver path component does, so they are never listed
or read as data.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from regtool.files import fsync_dir, write_atomic
from regtool.server.storage.driver import FileInfo, PathNotFound
from regtool.server.storage.paths import check_path

__all__ = ["FilesystemDriver"]

# Tries of a write or delete that a concurrent delete or write under the same directory made fail.
_RACE_ATTEMPTS = 3


class _FileWriter:
    __slots__ = ("_file", "_path")

    def __init__(self, path: str, append: bool) -> None:
        self._path = path
        # Unbuffered: callers write large chunks, and every byte must be in the file when size is read.
        self._file = open(path, "ab" if append else "wb", buffering=0)

    @property
    def size(self) -> int:
        return self._file.tell()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            if written is None:  # pragma: no cover - only for non-blocking files
                continue
            view = view[written:]

    def truncate(self, size: int) -> None:
        self._file.truncate(size)
        self._file.seek(size)

    def commit(self) -> None:
        try:
            os.fsync(self._file.fileno())
        finally:
            self._file.close()

    def close(self) -> None:
        self._file.close()


class FilesystemDriver:
    """Files under ``root`` (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _full(self, path: str) -> str:
        return os.path.join(self.root, check_path(path))

    def get_content(self, path: str) -> bytes:
        full = self._full(path)
        try:
            with open(full, "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(f"storage path {path!r} not found") from None

    def put_content(self, path: str, data: bytes) -> None:
        full = self._full(path)
        for attempt in range(_RACE_ATTEMPTS):
            os.makedirs(os.path.dirname(full), exist_ok=True)
            try:
                write_atomic(full, data)
                return
            except FileNotFoundError:
                # A delete of the directory (a tag's, a repository's) ran between the two steps: make it again.
                if attempt == _RACE_ATTEMPTS - 1:
                    raise

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        full = self._full(path)
        try:
            f = open(full, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise PathNotFound(f"storage path {path!r} not found") from None
        if offset:
            f.seek(offset)
        return f

    def writer(self, path: str, *, append: bool = False) -> _FileWriter:
        full = self._full(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return _FileWriter(full, append)

    def stat(self, path: str) -> FileInfo:
        try:
            st = os.stat(self._full(path))
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(f"storage path {path!r} not found") from None
        is_dir = os.path.isdir(self._full(path))
        return FileInfo(path, 0 if is_dir else st.st_size, is_dir, st.st_mtime)

    def list(self, path: str) -> list[str]:
        try:
            with os.scandir(self._full(path)) as entries:
                return [e.name for e in entries if not e.name.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFound(f"storage directory {path!r} not found") from None

    def move(self, source: str, destination: str) -> None:
        src, dst = self._full(source), self._full(destination)
        directory = os.path.dirname(dst)
        os.makedirs(directory, exist_ok=True)
        try:
            os.replace(src, dst)
        except FileNotFoundError:
            raise PathNotFound(f"storage path {source!r} not found") from None
        except OSError as exc:
            # Another writer moved a directory into place first (only files are content-addressed data).
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            shutil.rmtree(src, ignore_errors=True)
        fsync_dir(directory)

    def delete(self, path: str) -> None:
        full = self._full(path)
        for attempt in range(_RACE_ATTEMPTS):
            try:
                if os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
                else:
                    os.unlink(full)
                return
            except (FileNotFoundError, NotADirectoryError):
                raise PathNotFound(f"storage path {path!r} not found") from None
            except OSError as exc:
                # A concurrent write made a directory of the path, or put a file into the tree being removed.
                if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY) or attempt == _RACE_ATTEMPTS - 1:
                    raise
