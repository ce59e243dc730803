"""What a v1 push cut short leaves in the store, made through serve's real v1 API: a layer PUT the server was
killed in the middle of, an image JSON without its layer, a layer without the checksum PUT that ends the image.
Each stays for the grace period and goes after it (the upload reported with its bytes), a dry run removes
nothing, a v1-tagged image stays, and an image whose layer is still arriving keeps it however old its JSON is."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import lzma
import os
import secrets
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from regtool.cli.units import format_bytes
from regtool.server.gc import GcOptions, collect_garbage
from regtool.server.gc.collector import Phase
from regtool.server.gc.inventory import children
from regtool.server.gc.v1uploads import v1_uploads
from regtool.server.storage.driver import PathNotFound, StorageDriver
from regtool.server.storage.registry import Registry
from regtool.server.storage.s3 import S3Driver
from tests.cli.support import in_process
from tests.gc.test_v1 import GRACE, V1Image, assert_served, push_image, tag
from tests.support.seaweedfs import S3Bucket
from tests.support.serve import RunningServe, run_serve, run_serve_process
from tests.v1.images import compress, layer_tar

MIB = 1024 * 1024
# More than one 10 MiB part of serve's s3 writer, so on s3 the killed upload is a multipart upload with a part.
SENT = 12 * MIB


@dataclass
class Store:
    """Where a killable serve keeps the registry: ``args`` for serve and serve gc, ``driver`` to look inside."""

    args: list[str]
    driver: StorageDriver
    env: dict[str, str]

    def run(self, root: Path) -> Any:
        return run_serve_process(root, *self.args, "--quiet", env=self.env)


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    if request.param == "filesystem":
        from regtool.server.storage.filesystem import FilesystemDriver

        root = tmp_path / "registry"
        return Store(["--root", str(root)], FilesystemDriver(root), {})
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    settings = bucket.settings
    env = bucket.store.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # serve gc, run in this process, finds the keys as serve does
    args = ["--storage", "s3", "--s3-bucket", settings.bucket, "--s3-endpoint", str(settings.endpoint)]
    args += ["--s3-region", settings.region, "--s3-path-style"]
    return Store(args, S3Driver(settings), env)


class HalfSentLayer:
    """A v1 layer PUT declaring ``total`` bytes, of which ``send`` sends the next piece; the socket stays open."""

    def __init__(self, port: int, image_id: str, total: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.body = os.urandom(total)
        self.sent = 0
        head = f"PUT /v1/images/{image_id}/layer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {total}\r\n\r\n"
        self.sock.sendall(head.encode())

    def send(self, size: int) -> None:
        self.sock.sendall(self.body[self.sent : self.sent + size])
        self.sent += size

    def finish(self) -> str:
        """Send the rest and return the response's status line."""
        self.send(len(self.body) - self.sent)
        answer = b""
        while b"\r\n" not in answer:
            answer += self.sock.recv(4096)
        self.sock.close()
        return answer.split(b"\r\n", 1)[0].decode()


def _json_only(client: httpx.Client, parent: V1Image | None = None) -> str:
    image_id = secrets.token_hex(32)
    fields = {"id": image_id, **({"parent": parent.id} if parent else {})}
    assert client.put(f"/v1/images/{image_id}/json", content=json.dumps(fields).encode()).status_code == 200
    return image_id


def _without_checksum(client: httpx.Client, layer: bytes) -> str:
    image_id = _json_only(client)
    assert client.put(f"/v1/images/{image_id}/layer", content=layer).status_code == 200
    return image_id


def _wait_for_upload(driver: StorageDriver, size: int) -> int:
    """Wait until a v1 layer upload holds ``size`` bytes or more in the store; return what it holds."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        held = [upload.size for upload in v1_uploads(driver)]
        if held and held[0] >= size:
            return held[0]
        time.sleep(0.05)
    raise AssertionError(f"no v1 upload reached {size} bytes")


def _gc(store: Store, *options: str, delay: str = f"{GRACE:g}s") -> dict[str, Any]:
    done = in_process("serve", "gc", *store.args, "--delay", delay, "--json", *options)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _removed(report: dict[str, Any], kind: str) -> dict[str, int]:
    return {r["what"]: r["size"] for r in report["removed"] if r["kind"] == kind}


def _multipart_uploads(driver: StorageDriver) -> list[str]:
    if not isinstance(driver, S3Driver):
        return []
    return [u["Key"] for u in driver.client.list_multipart_uploads(Bucket=driver.bucket).get("Uploads", [])]


def test_a_push_cut_short_goes_after_the_grace_period(store: Store, tmp_path: Path) -> None:
    kept_layer, unfinished_layer = compress(layer_tar(20), "gzip"), compress(layer_tar(21), "gzip")
    with store.run(tmp_path / "serve") as server, httpx.Client(base_url=server.url) as client:
        kept = push_image(client, kept_layer)
        tag(client, "team/kept", "1", kept)
        no_layer = _json_only(client, kept)
        no_checksum = _without_checksum(client, unfinished_layer)
        killed = _json_only(client)
        cut = HalfSentLayer(server.port, killed, 2 * SENT)
        cut.send(SENT)
        # On s3 the bytes short of a part die with the process: only the part sent is in the store.
        _wait_for_upload(store.driver, 10 * MIB if isinstance(store.driver, S3Driver) else SENT - MIB)
        server.kill()
        cut.sock.close()
    (left,) = v1_uploads(store.driver)
    upload_ids, held = [left.upload_id], left.size
    assert held >= 10 * MIB
    if isinstance(store.driver, S3Driver):
        # No object holds these bytes yet: only the v1 upload's marker makes them findable.
        assert _multipart_uploads(store.driver) == [store.driver.key(f"v1/_uploads/{left.upload_id}/data")]

    # Within the grace period all of it may be a push about to go on: nothing goes.
    young = _gc(store, delay="1h")
    assert _removed(young, "v1-upload") == {} and _removed(young, "v1-image") == {}

    time.sleep(GRACE + 0.5)
    dry = _gc(store, "--dry-run")
    assert _removed(dry, "v1-upload") == {upload_ids[0]: held}
    assert set(_removed(dry, "v1-image")) == {no_layer, no_checksum, killed}
    assert [upload.upload_id for upload in v1_uploads(store.driver)] == upload_ids

    done = _gc(store)
    assert _removed(done, "v1-upload") == {upload_ids[0]: held}
    assert set(_removed(done, "v1-image")) == {no_layer, no_checksum, killed}
    assert str(V1Image(no_checksum, unfinished_layer).digest) in _removed(done, "blob")
    assert done["bytes_freed"] >= held + len(unfinished_layer)
    assert list(v1_uploads(store.driver)) == []
    assert _multipart_uploads(store.driver) == []

    with store.run(tmp_path / "serve") as server, httpx.Client(base_url=server.url) as client:
        assert_served(client, kept)
        for image_id in (no_layer, no_checksum, killed):
            assert client.get(f"/v1/images/{image_id}/json").status_code == 404
        # The image a tag reaches pulls whole, and the store takes the same push again.
        pulled = in_process("pull", "--protocol", "v1", f"{server.host}/team/kept:1", str(tmp_path / "pulled"))
        assert pulled.returncode == 0, pulled.stderr
        again = push_image(client, unfinished_layer)
        assert_served(client, again)
    # The push made again is recent: a collection keeps it.
    assert _removed(_gc(store, delay="1h"), "v1-image") == {}


def test_the_summary_names_v1_uploads(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    with run_serve_process(root, "--quiet") as server, httpx.Client(base_url=server.url) as client:
        image_id = _json_only(client)
        cut = HalfSentLayer(server.port, image_id, 4 * MIB)
        cut.send(2 * MIB)
        _wait_for_upload(_filesystem(root), MIB)
        server.kill()
        cut.sock.close()
    (left,) = v1_uploads(_filesystem(root))
    time.sleep(GRACE + 0.1)
    done = in_process("serve", "gc", "--root", str(root), "--delay", "1s")
    assert done.returncode == 0, done.stderr
    size = format_bytes(left.size)
    assert f"removed v1 layer upload {left.upload_id} ({size})" in done.stdout.splitlines()
    assert done.stdout.splitlines()[-1] == f"removed 1 v1 image, 1 v1 layer upload: {size} freed"
    assert not any((root / "v1" / "_uploads").iterdir())


def _filesystem(root: Path) -> StorageDriver:
    from regtool.server.storage.filesystem import FilesystemDriver

    return FilesystemDriver(root)


@pytest.fixture
def live_serve(tmp_path: Path) -> Iterator[RunningServe]:
    with run_serve(tmp_path / "registry") as server:
        yield server


def _registry(server: RunningServe) -> Registry:
    registry = server.app.state.context.registry
    assert isinstance(registry, Registry)
    return registry


def test_an_image_whose_layer_is_arriving_stays(live_serve: RunningServe) -> None:
    with httpx.Client(base_url=live_serve.url) as client:
        image_id = _json_only(client)
        arriving = HalfSentLayer(live_serve.port, image_id, 8 * MIB)
        driver = _registry(live_serve).driver
        # A slow layer: every file of the image is older than the grace period, the upload's bytes are not.
        began = time.monotonic()
        while time.monotonic() - began < GRACE + 0.3:
            arriving.send(MIB)
            _wait_for_upload(driver, arriving.sent - MIB)  # the server writes in 1 MiB steps
            time.sleep(0.3)
        report = collect_garbage(_registry(live_serve), GcOptions(delay=GRACE))
        assert [r for r in report.removed if r.kind.startswith("v1")] == []
        assert arriving.finish().endswith("200 OK")
        layer = arriving.body
        payload = "sha256:" + hashlib.sha256(json.dumps({"id": image_id}).encode() + b"\n" + layer).hexdigest()
        done = client.put(f"/v1/images/{image_id}/checksum", headers={"X-Docker-Checksum-Payload": payload})
        assert done.status_code == 200, done.text
        assert client.get(f"/v1/images/{image_id}/layer").content == layer


def test_a_layer_upload_begun_after_the_mark_keeps_its_image(live_serve: RunningServe) -> None:
    with httpx.Client(base_url=live_serve.url) as client, ExitStack() as stack:
        image_id = _json_only(client)
        time.sleep(GRACE + 0.2)
        begun: list[HalfSentLayer] = []

        def begin_on(phase: Phase) -> None:
            # The v1 images are marked with the links, and their directories go right after.
            if phase == "links":
                begun.append(HalfSentLayer(live_serve.port, image_id, 2 * MIB))
                stack.callback(begun[0].sock.close)
                begun[0].send(MIB)
                _wait_for_upload(_registry(live_serve).driver, MIB)

        report = collect_garbage(_registry(live_serve), GcOptions(delay=GRACE), on_phase=begin_on)
        assert [r for r in report.removed if r.kind.startswith("v1")] == []
        assert begun[0].finish().endswith("200 OK")
        assert client.get(f"/v1/images/{image_id}/json").status_code == 400  # still in progress, not gone


def test_images_a_tag_reaches_stay_with_their_unfinished_parent(live_serve: RunningServe) -> None:
    # put_tag accepts an image still being pushed: what a tag reaches stays, finished or not.
    with httpx.Client(base_url=live_serve.url) as client:
        parent = _json_only(client)
        tagged = client.put("/v1/repositories/team/odd/tags/1", content=json.dumps(parent))
        assert tagged.status_code == 200, tagged.text
        time.sleep(GRACE + 0.2)
        report = collect_garbage(_registry(live_serve), GcOptions(delay=GRACE, delete_untagged=True))
        assert [r for r in report.removed if r.kind == "v1-image"] == []
        assert client.get(f"/v1/images/{parent}/json").status_code == 400  # there, being uploaded


def test_a_repository_a_push_never_tagged_goes(store: Store, tmp_path: Path) -> None:
    with store.run(tmp_path / "serve") as server, httpx.Client(base_url=server.url) as client:
        # Two pushes stopped after their first request (the image list) and an image JSON.
        for name in ("team/gone", "team/cut"):
            listed = client.put(f"/v1/repositories/{name}/", json=[{"id": _json_only(client)}])
            assert listed.status_code == 200, listed.text
        # Tagged once, its tag deleted since: its metadata stays, as docker-registry kept it.
        once = push_image(client, compress(layer_tar(22), "gzip"))
        tag(client, "team/once", "1", once)
        assert client.delete("/v1/repositories/team/once/tags/1").status_code == 200
        # A tagged repository nested in one never tagged: only the parent's own files go.
        tag(client, "team/cut/sub", "1", once)

        assert _removed(_gc(store, delay="1h"), "v1-repository") == {}
        time.sleep(GRACE + 0.5)
        assert set(_removed(_gc(store, "--dry-run"), "v1-repository")) == {"team/gone", "team/cut"}
        assert client.get("/v1/repositories/team/gone/images").status_code == 200
        done = _gc(store)
        assert set(_removed(done, "v1-repository")) == {"team/gone", "team/cut"}

        for name in ("team/gone", "team/cut"):
            assert client.get(f"/v1/repositories/{name}/images").status_code == 404
        if not isinstance(store.driver, S3Driver):
            # SeaweedFS lists an emptied prefix for a while (storage/s3.py): search would name it until it forgets.
            assert client.get("/v1/search", params={"q": "gone"}).json()["results"] == []
        assert client.get("/v1/repositories/team/cut/sub/tags").json() == {"1": once.id}
        assert [r["name"] for r in client.get("/v1/search", params={"q": "once"}).json()["results"]] == ["team/once"]
        assert_served(client, once)
    assert _removed(_gc(store), "v1-repository") == {}


def test_a_stalled_layer_removed_meanwhile_is_refused_and_pushed_again(live_serve: RunningServe) -> None:
    with httpx.Client(base_url=live_serve.url) as client:
        image_id = _json_only(client)
        stalled = HalfSentLayer(live_serve.port, image_id, 3 * MIB)
        stalled.send(2 * MIB)
        registry = _registry(live_serve)
        _wait_for_upload(registry.driver, MIB)
        time.sleep(GRACE + 0.3)  # nothing more arrives for longer than the grace period: the push looks dead
        report = collect_garbage(registry, GcOptions(delay=GRACE))
        assert sorted(r.kind for r in report.removed if r.kind.startswith("v1")) == ["v1-image", "v1-upload"]
        stalled.send(len(stalled.body) - stalled.sent)
        answer = b""
        while not answer.endswith(b"}") and (piece := stalled.sock.recv(4096)):
            answer += piece
        stalled.sock.close()
        assert answer.startswith(b"HTTP/1.1 400 ")
        error = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert error == {"error": "Layer upload removed after being idle too long: push the image again"}
        assert list(v1_uploads(registry.driver)) == []
        assert client.get(f"/v1/images/{image_id}/json").status_code == 404
        assert_served(client, push_image(client, stalled.body))


class _Zeros(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        view[:] = bytes(len(view))
        return len(view)


def _xz_layer_of_zeros(size: int) -> bytes:
    """An xz tar whose one file is ``size`` zero bytes: a small upload that decompresses to a large blob."""
    out = io.BytesIO()
    with lzma.open(out, "wb", preset=0) as xz, tarfile.open(fileobj=xz, mode="w|") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tar.addfile(info, io.BufferedReader(_Zeros(), 1 << 20))
    return out.getvalue()


def _temp_uploads(driver: StorageDriver) -> dict[str, int]:
    """The upload area's entries and the bytes of their data so far (0 when it has none yet)."""
    held: dict[str, int] = {}
    for upload_id in children(driver, "uploads"):
        try:
            held[upload_id] = driver.stat(f"uploads/{upload_id}/data").size
        except PathNotFound:
            held[upload_id] = 0
    return held


def _settled_uploads(driver: StorageDriver) -> dict[str, int]:
    """``_temp_uploads`` once it stops changing: an object store may still complete a part whose bytes were all in
    the socket when the server was killed."""
    deadline = time.monotonic() + 15
    seen = _temp_uploads(driver)
    while True:
        time.sleep(0.5)
        now = _temp_uploads(driver)
        if now == seen or time.monotonic() > deadline:
            return now
        seen = now


def test_a_v1_tag_killed_while_its_layer_decompresses_leaves_an_upload_gc_finds(store: Store, tmp_path: Path) -> None:
    # An xz layer is shown over v2 decompressed: the tag PUT writes that blob through the upload area.
    layer = _xz_layer_of_zeros(200 * MIB)
    with store.run(tmp_path / "serve") as server, httpx.Client(base_url=server.url, timeout=60) as client:
        image = push_image(client, layer)
        tagging = threading.Thread(target=lambda: _put_tag_ignoring_errors(server.url, image.id), daemon=True)
        tagging.start()
        deadline = time.monotonic() + 60
        while not any(_temp_uploads(store.driver).values()):
            assert time.monotonic() < deadline, "the decompressed layer never started"
            time.sleep(0.02)
        server.kill()
        tagging.join(timeout=10)
    ((upload_id, held),) = _settled_uploads(store.driver).items()
    assert 0 < held < 200 * MIB

    time.sleep(GRACE + 0.5)
    done = _gc(store)
    assert _removed(done, "upload") == {upload_id: held}
    assert _multipart_uploads(store.driver) == []
    with pytest.raises(PathNotFound):
        store.driver.stat(f"uploads/{upload_id}/info")


def _put_tag_ignoring_errors(url: str, image_id: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.put(f"{url}/v1/repositories/team/big/tags/1", content=json.dumps(image_id), timeout=60)
