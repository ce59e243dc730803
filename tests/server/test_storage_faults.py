"""Storage that cannot take writes: ``serve`` refuses it at start, and storage that turns read-only (or denies
access) under a running server answers 507 in the API's error envelope, with one log line and no traceback."""

from __future__ import annotations

import dataclasses
import errno
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from regtool.errors import UsageError
from regtool.server.storage.driver import FileInfo, FileWriter, StorageDriver
from regtool.server.storage.filesystem import FilesystemDriver
from regtool.server.storage.registry import Registry
from tests.cli.support import assert_user_error, regtool
from tests.server.mounts import remount_read_only, tmpfs_mount
from tests.support.images import write_image
from tests.support.serve import free_port, run_serve, run_serve_process


def _source(tmp_path: Path) -> str:
    write_image(tmp_path / "src", "1.0", [{"a.txt": b"a" * 3000}, {"b.txt": b"b" * 5000}])
    return f"{tmp_path / 'src'}:1.0"


def test_serve_refuses_a_read_only_root_unless_it_serves_read_only(tmp_path: Path) -> None:
    with tmpfs_mount(tmp_path / "ro", read_only=True) as root:
        port = free_port()
        refused = subprocess.run(
            [sys.executable, "-m", "regtool", "serve", "--root", str(root), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert_user_error(refused, 2, f"storage root {root} is not writable", "Read-only file system")
        # Serving read-only needs no writes: the same root starts and answers.
        with run_serve_process(root, "--read-only", "--quiet") as server:
            assert httpx.get(f"{server.url}/v2/").status_code == 200
            assert httpx.post(f"{server.url}/v2/r/blobs/uploads/").status_code == 405


def test_storage_turning_read_only_answers_507_with_one_log_line(tmp_path: Path) -> None:
    source = _source(tmp_path)
    with tmpfs_mount(tmp_path / "storage") as root, run_serve_process(root) as server:
        remount_read_only(root)
        pushed = regtool("push", source, f"{server.host}/team/app:1.0", "-q", "--retries", "0", cwd=tmp_path)
        assert_user_error(pushed, 1, "HTTP 507", "storage is read-only (read-only file system)")
        pushed_v1 = regtool("push", source, f"{server.host}/team/old:1.0", "-q", "--protocol", "v1", cwd=tmp_path)
        assert_user_error(pushed_v1, 1, "HTTP 507", "storage is read-only")
        response = httpx.post(f"{server.url}/v2/team/app/blobs/uploads/")
        assert response.status_code == 507
        error = response.json()["errors"][0]
        assert error["code"] == "UNKNOWN"
        assert error["message"] == (
            "storage is read-only (read-only file system) while handling POST /v2/team/app/blobs/uploads/"
        )
        v1_response = httpx.put(f"{server.url}/v1/images/{'a' * 64}/json", content=b'{"id": "' + b"a" * 64 + b'"}')
        assert v1_response.status_code == 507
        assert v1_response.json() == {
            "error": f"storage is read-only (read-only file system) while handling PUT /v1/images/{'a' * 64}/json"
        }
        # Reads still work.
        assert httpx.get(f"{server.url}/v2/_catalog").status_code == 200
    log = server.log_path.read_text()
    assert "Traceback" not in log, log
    faults = [line for line in log.splitlines() if "storage is read-only" in line]
    # One line per refused request (the v1 push stops at its first 507; the v2 push tried its two blobs).
    assert 2 <= len(faults) <= 6, log
    assert not [line for line in log.splitlines() if '" 500 ' in line], log


class _DeniedWriter:
    def __init__(self, inner: FileWriter) -> None:
        self._inner = inner

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    def truncate(self, size: int) -> None:
        self._inner.truncate(size)

    def commit(self) -> None:
        self._inner.commit()

    def close(self) -> None:
        self._inner.close()


class _DeniedDriver:
    """A filesystem driver whose storage denies every write (EACCES), as a root owned by another user would."""

    def __init__(self, inner: FilesystemDriver) -> None:
        self._inner = inner

    def get_content(self, path: str) -> bytes:
        return self._inner.get_content(path)

    def put_content(self, path: str, data: bytes) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    def reader(self, path: str, offset: int = 0) -> object:
        return self._inner.reader(path, offset)

    def writer(self, path: str, *, append: bool = False) -> FileWriter:
        return _DeniedWriter(self._inner.writer(path, append=append))

    def stat(self, path: str) -> FileInfo:
        return self._inner.stat(path)

    def list(self, path: str) -> list[str]:
        return self._inner.list(path)

    def move(self, source: str, destination: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", destination)

    def delete(self, path: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", path)


def test_the_start_check_names_a_permission_error(tmp_path: Path) -> None:
    from regtool.server.app import check_writable

    driver: StorageDriver = _DeniedDriver(FilesystemDriver(tmp_path))  # type: ignore[assignment]
    with pytest.raises(UsageError, match=r"storage root /x is not writable \(Permission denied\)"):
        check_writable(driver, "/x")
    check_writable(FilesystemDriver(tmp_path), str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_permission_errors_answer_507_in_each_api_envelope(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "registry"
    with run_serve(root) as server, httpx.Client(base_url=server.url) as http:
        # The running server's storage starts denying writes.
        driver: StorageDriver = _DeniedDriver(FilesystemDriver(root))  # type: ignore[assignment]
        context = server.app.state.context
        server.app.state.context = dataclasses.replace(context, driver=driver, registry=Registry(driver))
        caplog.clear()
        started = http.post("/v2/team/app/blobs/uploads/")
        assert started.status_code == 507
        assert started.json()["errors"][0]["message"] == (
            "storage not accessible (permission denied) while handling POST /v2/team/app/blobs/uploads/"
        )
        image = "b" * 64
        v1 = http.put(f"/v1/images/{image}/json", content=f'{{"id": "{image}"}}'.encode())
        assert v1.status_code == 507
        assert v1.json()["error"].startswith("storage not accessible (permission denied)")
        assert http.get("/v2/").status_code == 200
    records = [r for r in caplog.records if r.name == "regtool.server"]
    assert [r.getMessage().split(" while ")[0] for r in records] == ["storage not accessible (permission denied)"] * 2
    assert all(r.exc_info is None for r in records)
