"""``regtool serve`` under faults: abandoned uploads are purged, a full disk answers 507 and keeps nothing
corrupt, and a client that disconnects mid-transfer disturbs no one else."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from regtool.digest import Digest
from regtool.server.app import create_app
from regtool.server.config import ServerConfig
from regtool.server.purge import UploadPurger, purge_uploads
from regtool.server.runner import uvicorn_config
from regtool.server.storage.driver import FileInfo, FileWriter, StorageDriver
from regtool.server.storage.filesystem import FilesystemDriver
from regtool.server.storage.registry import Registry
from tests.cli.support import assert_user_error, regtool
from tests.faults.conftest import REPOSITORY, Seeded
from tests.support.serve import run_serve

UPLOADS = f"/v2/{REPOSITORY}/blobs/uploads/"


def _start_upload(http: httpx.Client) -> str:
    response = http.post(UPLOADS)
    assert response.status_code == 202
    return response.headers["Location"]


# -- purge ---------------------------------------------------------------------------------------------------


def test_abandoned_uploads_are_purged_and_active_ones_kept(tmp_path: Path) -> None:
    with run_serve(tmp_path / "registry", upload_purge_age=0.4) as server, httpx.Client(base_url=server.url) as http:
        abandoned = _start_upload(http)
        active = _start_upload(http)
        assert http.patch(abandoned, content=b"a" * 10).status_code == 202
        for _ in range(6):
            time.sleep(0.1)
            assert http.patch(active, content=b"b" * 10).status_code == 202
        # The next requests run a purge pass first: the idle session is gone, the busy one is intact.
        gone = http.get(abandoned)
        assert gone.status_code == 404
        assert gone.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        alive = http.get(active)
        assert alive.status_code == 204 and alive.headers["Range"] == "0-59"
        digest = Digest.of(b"b" * 60)
        assert http.put(active, params={"digest": str(digest)}).status_code == 201
        assert server.root is not None
        assert list((server.root / "uploads").iterdir()) == []


def test_uploads_are_kept_without_a_purge_age(tmp_path: Path) -> None:
    with run_serve(tmp_path / "registry") as server, httpx.Client(base_url=server.url) as http:
        location = _start_upload(http)
        time.sleep(0.3)
        http.get("/v2/")
        assert http.get(location).status_code == 204


def test_purge_uploads_by_age(tmp_path: Path) -> None:
    registry = Registry(FilesystemDriver(tmp_path))
    old = registry.create_upload("team/app")
    new = registry.create_upload("team/app")
    now = time.time()
    assert purge_uploads(registry, 60, now=now) == []
    later = now + 120
    writer = registry.upload_writer(new)
    writer.write(b"x")
    writer.close()
    assert set(purge_uploads(registry, 60, now=later)) == {old, new}
    assert purge_uploads(registry, 60, now=later) == []
    assert purge_uploads(Registry(FilesystemDriver(tmp_path / "empty")), 60) == []


@pytest.mark.anyio
async def test_purger_runs_at_most_once_per_interval(tmp_path: Path) -> None:
    ticks = [0.0]
    registry = Registry(FilesystemDriver(tmp_path))
    purger = UploadPurger(registry, 0.0, interval=10.0, clock=lambda: ticks[0])
    first = registry.create_upload("team/app")
    time.sleep(0.01)
    assert await purger.maybe_run() == [first]
    registry.create_upload("team/app")
    time.sleep(0.01)
    ticks[0] = 5.0
    assert await purger.maybe_run() == []  # within the interval: no pass
    ticks[0] = 10.0
    assert len(await purger.maybe_run()) == 1


# -- a full disk ---------------------------------------------------------------------------------------------


class _Budget:
    def __init__(self, nbytes: int) -> None:
        self.left = nbytes
        self.lock = threading.Lock()

    def spend(self, nbytes: int) -> None:
        with self.lock:
            if nbytes > self.left:
                self.left = 0
                raise OSError(errno.ENOSPC, "No space left on device")
            self.left -= nbytes


class _FullWriter:
    def __init__(self, inner: FileWriter, budget: _Budget) -> None:
        self._inner = inner
        self._budget = budget

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._budget.spend(len(data))
        self._inner.write(data)

    def truncate(self, size: int) -> None:
        self._inner.truncate(size)

    def commit(self) -> None:
        self._inner.commit()

    def close(self) -> None:
        self._inner.close()


class _FillingDriver:
    """A filesystem driver whose disk holds only ``budget`` more bytes."""

    def __init__(self, inner: FilesystemDriver, budget: _Budget) -> None:
        self._inner = inner
        self.budget = budget

    def get_content(self, path: str) -> bytes:
        return self._inner.get_content(path)

    def put_content(self, path: str, data: bytes) -> None:
        self.budget.spend(len(data))
        self._inner.put_content(path, data)

    def reader(self, path: str, offset: int = 0) -> object:
        return self._inner.reader(path, offset)

    def writer(self, path: str, *, append: bool = False) -> FileWriter:
        return _FullWriter(self._inner.writer(path, append=append), self.budget)

    def stat(self, path: str) -> FileInfo:
        return self._inner.stat(path)

    def list(self, path: str) -> list[str]:
        return self._inner.list(path)

    def move(self, source: str, destination: str) -> None:
        self._inner.move(source, destination)

    def delete(self, path: str) -> None:
        self._inner.delete(path)


@contextlib.contextmanager
def _run_app(app: Starlette) -> Iterator[str]:
    """``app`` under uvicorn on a free 127.0.0.1 port in a thread; yields ``host:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn_config(app, log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.005)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_full_disk_answers_507_and_keeps_nothing_corrupt(tmp_path: Path, source: tuple[Path, object]) -> None:
    root = tmp_path / "registry"
    app = create_app(ServerConfig(root=root, access_log=False))
    budget = _Budget(1 << 20)
    driver: StorageDriver = _FillingDriver(FilesystemDriver(root), budget)  # type: ignore[assignment]
    context = app.state.context
    app.state.context = dataclasses.replace(context, driver=driver, registry=Registry(driver))
    with _run_app(app) as host:
        proc = regtool("push", "src:1.0", f"{host}/{REPOSITORY}:1.0", "-q", "--retries", "0", cwd=tmp_path)
        line = assert_user_error(proc, 1, "507", "storage full")
        assert "no space left on device" in line
        with httpx.Client(base_url=f"http://{host}") as http:
            assert http.get(f"/v2/{REPOSITORY}/manifests/1.0").status_code == 404
            # No blob holds a partial: every stored blob has exactly the bytes of its digest.
            for data in (root / "blobs").rglob("data"):
                content = data.read_bytes()
                assert data.parent.name == Digest.of(content).encoded
            # Space again: the same push completes.
            budget.left = 1 << 30
            again = regtool("push", "src:1.0", f"{host}/{REPOSITORY}:1.0", "-q", cwd=tmp_path)
            assert again.returncode == 0, again.stderr
            assert http.get(f"/v2/{REPOSITORY}/manifests/1.0").status_code == 200


# -- disconnects -----------------------------------------------------------------------------------------------


def test_client_disconnects_mid_upload_and_mid_download_disturb_no_one(seeded: Seeded, tmp_path: Path) -> None:
    server = seeded.server
    layer = seeded.layer
    with httpx.Client(base_url=server.url) as http:
        location = _start_upload(http)
        # A raw client that announces 1 MB, sends 100 kB and goes away.
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            head = f"PATCH {location} HTTP/1.1\r\nHost: {server.host}\r\nContent-Length: 1000000\r\n\r\n"
            raw.sendall(head.encode() + b"u" * 100_000)
        # A raw client that asks for the layer, reads 64 kB and goes away.
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            request = f"GET /v2/{REPOSITORY}/blobs/{layer.digest} HTTP/1.1\r\nHost: {server.host}\r\n\r\n"
            raw.sendall(request.encode())
            raw.recv(65536)
        # Everyone else is served in full, and the interrupted session holds exactly what arrived.
        pulled = regtool("pull", seeded.ref(server.host), "out", "-q", cwd=tmp_path)
        assert pulled.returncode == 0, pulled.stderr
        blob = tmp_path / "out" / "blobs" / "sha256" / layer.digest.encoded
        assert blob.read_bytes() == seeded.blob(layer.digest)
        deadline = time.monotonic() + 5
        while (status := http.get(location)).headers.get("Range") != "0-99999":
            assert time.monotonic() < deadline, status.headers
            time.sleep(0.05)
        rest = b"u" * 50
        assert http.patch(location, content=rest).status_code == 202
        digest = Digest.of(b"u" * 100_050)
        assert http.put(location, params={"digest": str(digest)}).status_code == 201
