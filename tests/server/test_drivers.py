"""The one storage-driver suite, run against every driver."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from regtool.server.storage import filesystem
from regtool.server.storage.driver import PathNotFound, StorageDriver
from regtool.server.storage.filesystem import FilesystemDriver
from regtool.server.storage.inmemory import InMemoryDriver
from regtool.server.storage.s3 import S3Driver
from tests.support.seaweedfs import S3Bucket


@pytest.fixture(params=["filesystem", "inmemory", "s3"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageDriver]:
    if request.param == "filesystem":
        yield FilesystemDriver(tmp_path / "root")
    elif request.param == "s3":
        # SeaweedFS, a real object store; a root directory, as an operator sharing a bucket would set.
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        yield S3Driver(replace(bucket.settings, root_directory="/registry/"))
    else:
        yield InMemoryDriver()


def test_put_get_replace(driver: StorageDriver) -> None:
    driver.put_content("a/b/c", b"one")
    assert driver.get_content("a/b/c") == b"one"
    driver.put_content("a/b/c", b"two!")
    assert driver.get_content("a/b/c") == b"two!"
    info = driver.stat("a/b/c")
    assert (info.size, info.is_dir) == (4, False)
    assert driver.stat("a/b").is_dir


def test_missing_paths_raise_path_not_found(driver: StorageDriver) -> None:
    for call in (
        lambda: driver.get_content("nope"),
        lambda: driver.stat("nope/x"),
        lambda: driver.list("nope"),
        lambda: driver.delete("nope"),
        lambda: driver.reader("nope"),
        lambda: driver.move("nope", "elsewhere"),
    ):
        with pytest.raises(PathNotFound):
            call()


def test_list_children(driver: StorageDriver) -> None:
    driver.put_content("d/x", b"1")
    driver.put_content("d/y/z", b"2")
    driver.put_content("other", b"3")
    assert sorted(driver.list("d")) == ["x", "y"]
    assert driver.list("d/y") == ["z"]


def test_writer_append_truncate_and_reader_offset(driver: StorageDriver) -> None:
    writer = driver.writer("up/data")
    writer.write(b"hello ")
    writer.close()
    writer = driver.writer("up/data", append=True)
    assert writer.size == 6
    writer.write(memoryview(b"world!!"))
    writer.truncate(11)
    assert writer.size == 11
    writer.commit()
    assert driver.get_content("up/data") == b"hello world"
    with driver.reader("up/data", 6) as f:
        assert f.read() == b"world"
    fresh = driver.writer("up/data")
    fresh.close()
    assert driver.get_content("up/data") == b""


def test_move_file_and_directory_replaces(driver: StorageDriver) -> None:
    driver.put_content("src/data", b"payload")
    driver.put_content("dst/data", b"old")
    driver.move("src/data", "dst/data")
    assert driver.get_content("dst/data") == b"payload"
    with pytest.raises(PathNotFound):
        driver.stat("src/data")
    driver.put_content("tree/a/b", b"x")
    driver.move("tree", "moved/tree")
    assert driver.get_content("moved/tree/a/b") == b"x"


def test_delete_file_and_tree(driver: StorageDriver) -> None:
    driver.put_content("t/a", b"1")
    driver.put_content("t/b/c", b"2")
    driver.delete("t/a")
    assert driver.list("t") == ["b"]
    driver.delete("t")
    with pytest.raises(PathNotFound):
        driver.stat("t")


@pytest.mark.parametrize(
    "path",
    ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a/.hidden", "a\x00b", "a\\b", "x" * 2000, "a/b/"],
)
def test_unsafe_paths_are_refused(driver: StorageDriver, path: str) -> None:
    with pytest.raises(ValueError, match="unsafe storage path"):
        driver.put_content(path, b"x")
    with pytest.raises(ValueError, match="unsafe storage path"):
        driver.get_content(path)


def test_concurrent_moves_of_the_same_content(driver: StorageDriver) -> None:
    payload = b"z" * 100_000
    for i in range(8):
        writer = driver.writer(f"uploads/{i}/data")
        writer.write(payload)
        writer.commit()
    errors: list[BaseException] = []

    def move(i: int) -> None:
        try:
            driver.move(f"uploads/{i}/data", "blobs/same/data")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=move, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert driver.get_content("blobs/same/data") == payload


def test_filesystem_driver_stays_under_root(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path / "root")
    driver.put_content("a/b", b"x")
    assert (tmp_path / "root" / "a" / "b").read_bytes() == b"x"
    assert not [p for p in (tmp_path / "root" / "a").iterdir() if p.name.startswith(".tmp")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_filesystem_writes_and_deletes_that_race_a_delete_or_write_still_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The interleavings a DELETE racing a PUT produces, forced: the directory removed between its making and the
    # write; a path that became a directory after it was looked at; a file put into a tree being removed.
    driver = FilesystemDriver(tmp_path)
    real_write, real_isdir, real_rmtree = filesystem.write_atomic, os.path.isdir, shutil.rmtree
    writes: list[str] = []

    def write_after_a_delete(path: str, data: bytes) -> None:
        writes.append(path)
        if len(writes) == 1:
            shutil.rmtree(os.path.dirname(path))
        real_write(path, data)

    monkeypatch.setattr(filesystem, "write_atomic", write_after_a_delete)
    driver.put_content("repositories/r/_manifests/tags/t/current/link", b"sha256:x")
    assert driver.get_content("repositories/r/_manifests/tags/t/current/link") == b"sha256:x"
    monkeypatch.setattr(filesystem, "write_atomic", real_write)

    driver.put_content("repositories/r/_manifests/tags/u/current/link", b"sha256:y")
    looked = []

    def stale_isdir(path: str) -> bool:
        looked.append(path)
        return False if len(looked) == 1 else real_isdir(path)

    monkeypatch.setattr(os.path, "isdir", stale_isdir)
    driver.delete("repositories/r/_manifests/tags/u")
    monkeypatch.setattr(os.path, "isdir", real_isdir)
    assert "u" not in driver.list("repositories/r/_manifests/tags")

    removals = []

    def rmtree_raced(path: str, *args: object, **kwargs: object) -> None:
        removals.append(path)
        if len(removals) == 1:
            raise OSError(errno.ENOTEMPTY, "Directory not empty", path)
        real_rmtree(path)

    monkeypatch.setattr(shutil, "rmtree", rmtree_raced)
    driver.delete("repositories/r/_manifests/tags/t")
    assert driver.list("repositories/r/_manifests/tags") == []
