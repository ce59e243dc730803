"""``serve --gc-interval``: the collector inside a running server, with pushes racing it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx

from regtool import mediatypes as mt
from regtool.digest import Digest
from tests.cli.support import in_process
from tests.gc.conftest import stored_blobs
from tests.server.helpers import image_manifest, push_blob, push_manifest
from tests.support.images import write_image
from tests.support.serve import run_serve, run_serve_process

HOUR = 3600.0


def _age(root: Path, digest: Digest, repository: str) -> None:
    """Make a blob and its link in ``repository`` look an hour old, as garbage left from long ago is."""
    old = time.time() - 2 * HOUR
    data = root / "blobs" / digest.algorithm / digest.encoded[:2] / digest.encoded / "data"
    link = root / "repositories" / repository / "_layers" / digest.algorithm / digest.encoded / "link"
    for path in (data, link):
        os.utime(path, (old, old))


def _wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("the online collector did not get there in time")


def test_pushes_racing_the_collector_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    with run_serve_process(root, "--gc-interval", "0.05s", "--quiet") as server:
        with httpx.Client(base_url=server.url) as client:
            # Old garbage goes while the server runs...
            orphan = push_blob(client, "junk", b"left over " * 100)
            _age(root, Digest.parse(orphan), "junk")
            _wait_for(lambda: Digest.parse(orphan) not in stored_blobs(root))
            assert client.head(f"/v2/junk/blobs/{orphan}").status_code == 404
            # ...a blob pushed without its manifest yet stays through many passes (the grace period)...
            config, layer = b'{"early": true}', b"layer pushed well before its manifest"
            push_blob(client, "early", config)
            push_blob(client, "early", layer)
            time.sleep(0.5)
            raw = image_manifest(config, [layer])
            assert push_manifest(client, "early", "1", raw, mt.OCI_MANIFEST).status_code == 201
            # ...and images pushed back to back into new repositories, under passes every 50 ms, all arrive whole.
            images = {}
            for number in range(6):
                image = write_image(tmp_path / f"img{number}", "t", [{"n.txt": f"image {number}".encode()}])
                pushed = in_process("push", f"{tmp_path / f'img{number}'}:t", f"{server.host}/race{number}:1")
                assert pushed.returncode == 0, pushed.stderr
                images[number] = image
            time.sleep(0.3)
            for number, image in images.items():
                got = client.get(f"/v2/race{number}/manifests/1", headers={"Accept": mt.OCI_MANIFEST})
                assert got.content == image.manifest.raw
                for digest, data in image.blobs.items():
                    assert client.get(f"/v2/race{number}/blobs/{digest}").content == data
            assert client.get(f"/v2/early/blobs/{Digest.of(layer)}").content == layer
        pulled = in_process("pull", f"{server.host}/race5:1", str(tmp_path / "pulled"))
        assert pulled.returncode == 0, pulled.stderr
    log = server.log_path.read_text()
    assert "garbage collection pass failed" not in log
    assert "unexpected error" not in log


def test_gc_options_are_checked(tmp_path: Path) -> None:
    bad = in_process("serve", "--root", str(tmp_path), "--gc-interval", "soon")
    assert bad.returncode == 2
    assert "invalid --gc-interval 'soon'" in bad.stderr
    alone = in_process("serve", "--root", str(tmp_path), "--gc-delay", "5m")
    assert alone.returncode == 2
    assert "add --gc-interval" in alone.stderr


def test_the_collector_stops_with_the_server(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    with run_serve(root, gc_interval=0.05) as server, httpx.Client(base_url=server.url) as client:
        orphan = Digest.parse(push_blob(client, "junk", b"left over " * 10))
        _age(root, orphan, "junk")
        _wait_for(lambda: orphan not in stored_blobs(root))
        assert any(thread.name == "regtool-gc" for thread in threading.enumerate())
    assert not any(thread.name == "regtool-gc" for thread in threading.enumerate())
