"""Shared resume state and retries, through the fault proxy in front of a real ``regtool serve``.

- a saved upload session belongs to one process at a time (a lock); a push that cannot take it opens its own;
- a saved session the registry no longer knows (404 on PATCH) means a fresh upload, not a failed push;
- two pushes of the same image at once both succeed;
- retries do not nest: a blob's requests share one budget, and people read one plain line per retry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from regtool.client.resume import UploadStateStore
from regtool.manifest import Manifest
from tests.cli.support import regtool
from tests.faults.conftest import REPOSITORY
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.serve import RunningServe

UPLOADS = r"/blobs/uploads/"


def _push(tmp_path: Path, proxy: FaultProxy, *args: str) -> subprocess.CompletedProcess[str]:
    return regtool(
        "push",
        "src:1.0",
        f"{proxy.host}/{REPOSITORY}:1.0",
        *args,
        cwd=tmp_path,
        env={"REGTOOL_STATE_DIR": str(tmp_path / "state")},
    )


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGTOOL_") and "proxy" not in k.lower()}
    env.update(REGTOOL_STATE_DIR=str(tmp_path / "state"), NO_PROXY="127.0.0.1,localhost")
    return subprocess.Popen(
        [sys.executable, "-m", "regtool", *args],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _interrupted(tmp_path: Path, proxy: FaultProxy, manifest: Manifest) -> None:
    """A first push cut mid-layer, leaving the layer's session saved for a resume."""
    proxy.add(Fault.drop_request(after=600_000, method="PUT", path=UPLOADS + ".+"))
    first = _push(tmp_path, proxy, "--retries", "0", "--jobs", "1", "-q")
    assert first.returncode == 6, first.stderr
    store = UploadStateStore(tmp_path / "state")
    assert store.load(proxy.host, REPOSITORY, str(manifest.layers[0].digest)) is not None
    proxy.clear_faults()
    proxy.reset_counts()


def _assert_stored(registry: RunningServe, manifest: Manifest) -> None:
    with httpx.Client(base_url=registry.url) as http:
        tagged = http.get(f"/v2/{REPOSITORY}/manifests/1.0", headers={"Accept": manifest.media_type})
        assert tagged.content == manifest.raw
        for desc in (manifest.config, *manifest.layers):
            assert desc is not None
            assert http.head(f"/v2/{REPOSITORY}/blobs/{desc.digest}").status_code == 200


def test_a_saved_session_locked_by_another_process_is_left_alone(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    _, manifest = source
    layer = manifest.layers[0]
    _interrupted(tmp_path, proxy, manifest)
    store = UploadStateStore(tmp_path / "state")
    saved = store.load(proxy.host, REPOSITORY, str(layer.digest))
    assert saved is not None
    # Another push owns the saved session (as a second process would, mid-upload).
    other = store.claim(proxy.host, REPOSITORY, str(layer.digest))
    assert other.owned
    try:
        proc = _push(tmp_path, proxy, "-q")
        assert proc.returncode == 0, proc.stderr
        # Neither the status GET nor a PATCH went to the other process's session; the whole layer went up anew.
        session = httpx.URL(saved.location).path
        assert [e for e in proxy.exchanges() if e.path.split("?")[0] == session] == []
        assert store.load(proxy.host, REPOSITORY, str(layer.digest)) == saved
    finally:
        other.release()
    _assert_stored(registry, manifest)
    assert not list((tmp_path / "state").glob("*.lock"))


def test_a_session_gone_on_patch_falls_back_to_a_fresh_upload(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    _, manifest = source
    _interrupted(tmp_path, proxy, manifest)
    # The status GET finds the session, but by the PATCH it is gone (another client closed it).
    proxy.add(Fault.status(404, method="PATCH", path=UPLOADS))
    proc = _push(tmp_path, proxy, "--json")
    assert proc.returncode == 0, proc.stderr
    _assert_stored(registry, manifest)
    assert [e.status for e in proxy.exchanges("PATCH", UPLOADS)] == [404]
    assert list((tmp_path / "state").glob("*.json")) == []


def test_two_pushes_of_the_same_image_at_once_both_succeed(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    _, manifest = source
    for trial in range(3):
        _interrupted(tmp_path, proxy, manifest)
        # Slow bodies, so that both runs are mid-upload at the same time.
        proxy.throttle(4_000_000)
        target = f"{proxy.host}/{REPOSITORY}:1.0"
        runs = [_start(tmp_path, "push", "src:1.0", target, "-q") for _ in range(2)]
        results = [(run.wait(timeout=120), run.communicate()) for run in runs]
        proxy.throttle(None)
        for code, (_out, err) in results:
            assert code == 0, (trial, err)
            assert "resume:" not in err
        _assert_stored(registry, manifest)
        with httpx.Client(base_url=registry.url) as http:
            http.delete(f"/v2/{REPOSITORY}/manifests/{manifest.digest}")
            for desc in manifest.layers:
                http.delete(f"/v2/{REPOSITORY}/blobs/{desc.digest}")


def test_retries_do_not_nest_and_are_told_once_each(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    _, manifest = source
    # As when the registry dies mid-push: every upload body is cut, and after the first two every HEAD fails.
    proxy.add(
        Fault.drop_request(after=100_000, method=None, path=UPLOADS + ".+", times=100),
        Fault.status(503, method="HEAD", path=r"/blobs/sha256:", times=100, skip=2),
    )
    proc = _push(tmp_path, proxy, "--json", "--jobs", "1")
    assert proc.returncode in {1, 6}, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    retries = [e for e in events if e["event"] == "retry"]
    # The layer (largest, first) fails. One budget for all its requests (3 retries by default): the retries of
    # the whole upload and those of its HEADs together, where they used to multiply (3 HEADs in each of 3).
    layer = manifest.layers[0].digest.encoded[:12]
    assert all(layer in e["what"] for e in retries), [e["what"] for e in retries]
    assert len(retries) == 3, [(e["what"], e["attempt"]) for e in retries]
    assert [e["attempt"] for e in retries] == [1, 2, 3]
    assert all(e["of"] == 4 for e in retries)
    assert sum(1 for e in events if e["event"] == "error") == 1


def test_human_output_says_what_is_retried_and_hides_event_lines(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    _, manifest = source
    _interrupted(tmp_path, proxy, manifest)
    proxy.add(Fault.drop_request(after=100_000, method="PATCH", path=UPLOADS))
    proc = _push(tmp_path, proxy)
    assert proc.returncode == 0, proc.stderr
    assert "key=" not in proc.stderr and "resume:" not in proc.stderr and "retry:" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: retrying")]
    assert len(warnings) == 1, proc.stderr
    assert "attempt 2 of 4" in warnings[0]
    assert "upload of blob sha256:" in warnings[0]
    # -vv shows the library's event lines as they are.
    verbose = _push(tmp_path, proxy, "-vv")
    assert verbose.returncode == 0, verbose.stderr
