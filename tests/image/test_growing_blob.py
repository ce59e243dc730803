"""GrowingBlob: readers follow a file while its writer is still writing it, in other threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from regtool.errors import ImageFormatError
from regtool.image.growing_blob import BlobAborted, GrowingBlob


def _read_all(blob: GrowingBlob[str], offset: int = 0) -> bytes:
    out = bytearray()
    buffer = memoryview(bytearray(5))
    with blob.follow(offset) as reader:
        while n := reader.readinto(buffer):
            out += buffer[:n]
    return bytes(out)


def test_a_reader_gets_bytes_written_after_it_started_and_ends_with_the_file(tmp_path: Path) -> None:
    blob: GrowingBlob[str] = GrowingBlob("layer 0")
    path = tmp_path / "blob.partial"
    second_part = threading.Event()
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(_read_all(blob, 2)))
    reader.start()
    with path.open("w+b") as f, blob.begin(f, path) as writer:
        writer.write(b"hello ")
        second_part.wait(0.3)  # the reader is blocked on bytes not written yet
        writer.write(b"growing world")
    moved = tmp_path / "blob"
    path.rename(moved)
    blob.finish("done", moved)
    reader.join(10)
    assert got == [b"llo growing world"]
    assert _read_all(blob) == b"hello growing world"  # a new reader opens the file where it was moved
    assert blob.result() == "done"


def test_the_writers_error_reaches_every_reader(tmp_path: Path) -> None:
    blob: GrowingBlob[str] = GrowingBlob("layer 1")
    path = tmp_path / "blob.partial"
    with path.open("w+b") as f, blob.begin(f, path) as writer:
        writer.write(b"part")
    blob.fail(ImageFormatError("docker-archive x.tar: truncated"))
    with pytest.raises(ImageFormatError, match="truncated"):
        _read_all(blob)
    with pytest.raises(ImageFormatError, match="truncated"):
        blob.result()


def test_abort_stops_a_waiting_reader_and_the_writer(tmp_path: Path) -> None:
    blob: GrowingBlob[str] = GrowingBlob("layer 2")
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            blob.result()
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    blob.abort()
    waiter.join(10)
    assert [type(e) for e in errors] == [BlobAborted]
    path = tmp_path / "blob.partial"
    with path.open("w+b") as f, pytest.raises(BlobAborted):
        blob.begin(f, path)


def test_a_cancelled_reader_stops_waiting(tmp_path: Path) -> None:
    blob: GrowingBlob[str] = GrowingBlob("layer 3")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(BlobAborted):
        blob.wait_started(cancel)
