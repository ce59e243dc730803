"""The in-memory storage driver: a dict of path -> bytes, for throwaway registries and tests.

Directories exist implicitly while a file lives below them. One lock serialises every operation.
"""

from __future__ import annotations

import io
import threading
import time
from typing import BinaryIO

from regtool.server.storage.driver import FileInfo, PathNotFound
from regtool.server.storage.paths import check_path

__all__ = ["InMemoryDriver"]


class _Entry:
    __slots__ = ("data", "modified")

    def __init__(self, data: bytearray) -> None:
        self.data = data
        self.modified = time.time()


class _MemoryWriter:
    __slots__ = ("_driver", "_entry")

    def __init__(self, driver: InMemoryDriver, entry: _Entry) -> None:
        self._driver = driver
        self._entry = entry

    @property
    def size(self) -> int:
        with self._driver.lock:
            return len(self._entry.data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with self._driver.lock:
            self._entry.data += data
            self._entry.modified = time.time()

    def truncate(self, size: int) -> None:
        with self._driver.lock:
            del self._entry.data[size:]

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


class InMemoryDriver:
    """Everything in process memory; lost when the server stops."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._files: dict[str, _Entry] = {}

    def _is_dir(self, path: str) -> bool:
        prefix = path + "/"
        return any(key.startswith(prefix) for key in self._files)

    def get_content(self, path: str) -> bytes:
        check_path(path)
        with self.lock:
            entry = self._files.get(path)
            if entry is None:
                raise PathNotFound(f"storage path {path!r} not found")
            return bytes(entry.data)

    def put_content(self, path: str, data: bytes) -> None:
        check_path(path)
        with self.lock:
            self._files[path] = _Entry(bytearray(data))

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        stream = io.BytesIO(self.get_content(path))
        stream.seek(offset)
        return stream

    def writer(self, path: str, *, append: bool = False) -> _MemoryWriter:
        check_path(path)
        with self.lock:
            entry = self._files.get(path)
            if entry is None or not append:
                entry = self._files[path] = _Entry(bytearray())
        return _MemoryWriter(self, entry)

    def stat(self, path: str) -> FileInfo:
        check_path(path)
        with self.lock:
            entry = self._files.get(path)
            if entry is not None:
                return FileInfo(path, len(entry.data), False, entry.modified)
            if self._is_dir(path):
                return FileInfo(path, 0, True, time.time())
        raise PathNotFound(f"storage path {path!r} not found")

    def list(self, path: str) -> list[str]:
        check_path(path)
        prefix = path + "/"
        with self.lock:
            names = {key[len(prefix) :].split("/", 1)[0] for key in self._files if key.startswith(prefix)}
        if not names:
            raise PathNotFound(f"storage directory {path!r} not found")
        return list(names)

    def move(self, source: str, destination: str) -> None:
        check_path(source)
        check_path(destination)
        with self.lock:
            if source in self._files:
                self._files[destination] = self._files.pop(source)
                return
            prefix = source + "/"
            moved = {key: entry for key, entry in self._files.items() if key.startswith(prefix)}
            if not moved:
                raise PathNotFound(f"storage path {source!r} not found")
            for key, entry in moved.items():
                del self._files[key]
                self._files[destination + key[len(source) :]] = entry

    def delete(self, path: str) -> None:
        check_path(path)
        prefix = path + "/"
        with self.lock:
            doomed = [key for key in self._files if key == path or key.startswith(prefix)]
            if not doomed:
                raise PathNotFound(f"storage path {path!r} not found")
            for key in doomed:
                del self._files[key]
