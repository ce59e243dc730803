"""``serve --gc-interval`` and untagged manifests: kept by default, removed with ``--gc-delete-untagged``, exactly
as ``serve gc`` and ``serve gc --delete-untagged`` decide (the same scene, the same blobs left), and never before
the grace period."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from tests.cli.support import in_process
from tests.gc.conftest import Filled, assert_pulls_identical, stored_blobs
from tests.gc.scene import fill
from tests.support.images import write_image
from tests.support.serve import run_serve_process

# Long enough that every push of the scene (blobs, then their manifest) lands within it under load.
DELAY = 3.0


def _wait_for_blobs(root: Path, expected: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stored_blobs(root) == expected:
            return
        time.sleep(0.1)
    raise AssertionError("the online collector did not reach the offline collector's result in time")


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["default", "delete-untagged"])
def test_online_passes_keep_what_serve_gc_keeps(tmp_path: Path, delete_untagged: bool) -> None:
    root = tmp_path / "registry"
    flags = ["--gc-interval", "0.1s", "--gc-delay", f"{DELAY:g}s", *(["--gc-delete-untagged"] * delete_untagged)]
    with run_serve_process(root, "--quiet", *flags) as server:
        scene = fill(server.url, server.host, tmp_path / "images")
        untagged = scene.untagged["app"].manifest.digest  # C: app:2 before B replaced it
        _wait_for_blobs(root, scene.live_untagged if delete_untagged else scene.live_default)
        accept = {"Accept": mt.OCI_MANIFEST}
        served = httpx.get(f"{server.url}/v2/app/manifests/{untagged}", headers=accept)
        assert served.status_code == (404 if delete_untagged else 200)
        assert_pulls_identical(Filled(server, scene, root), tmp_path)
    assert "garbage collection pass failed" not in server.log_path.read_text()


def test_an_untagged_manifest_outlives_the_grace_period(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    flags = ["--gc-interval", "0.05s", "--gc-delay", f"{DELAY:g}s", "--gc-delete-untagged"]
    with run_serve_process(root, "--quiet", *flags) as server, httpx.Client(base_url=server.url) as client:
        image = write_image(tmp_path / "c", "t", [{"c.txt": b"untagged soon"}])
        pushed_at = time.time()
        done = in_process("push", f"{tmp_path / 'c'}:t", f"{server.host}/app:1")
        assert done.returncode == 0, done.stderr
        assert client.delete("/v2/app/manifests/1").status_code == 202  # the tag only: now untagged
        url = f"/v2/app/manifests/{image.manifest.digest}"
        while client.get(url, headers={"Accept": mt.OCI_MANIFEST}).status_code == 200:
            time.sleep(0.02)
            assert time.time() - pushed_at < 60, "never collected"
        # Removed, and not before the grace period had passed since the manifest was written.
        assert time.time() - pushed_at >= DELAY


def test_gc_delete_untagged_needs_gc_interval(tmp_path: Path) -> None:
    alone = in_process("serve", "--root", str(tmp_path), "--gc-delete-untagged")
    assert alone.returncode == 2
    assert "--gc-delete-untagged says what --gc-interval removes: add --gc-interval DURATION" in alone.stderr
