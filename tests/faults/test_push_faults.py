"""``regtool push`` through the fault proxy: each fault ends with the image stored byte-identical in the
registry, or a clean failure (exit code, one ``error:`` line, no tag pointing at missing content).

Uploads are resumed rather than restarted: after a cut, the client asks the registry how far the session got
and sends only the rest, so the request bytes relayed by the proxy add up to the blob sizes.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import anyio
import httpx

from regtool.client import Client
from regtool.client.results import PushResult
from regtool.client.resume import UploadStateStore
from regtool.manifest import Manifest
from regtool.reference import Reference
from tests.cli.support import assert_user_error, regtool
from tests.faults.conftest import REPOSITORY
from tests.support.faultproxy import Fault, FaultProxy, run_fault_proxy
from tests.support.serve import RunningServe, run_serve

UPLOADS = r"/blobs/uploads/"


def _push(
    tmp_path: Path, proxy: FaultProxy, *args: str, tag: str = "1.0", json_output: bool = True
) -> subprocess.CompletedProcess[str]:
    extra = ("--json",) if json_output else ("-q",)
    return regtool(
        "push",
        "src:1.0",
        f"{proxy.host}/{REPOSITORY}:{tag}",
        *extra,
        *args,
        cwd=tmp_path,
        env={"REGTOOL_STATE_DIR": str(tmp_path / "state")},
    )


def _assert_stored(
    tmp_path: Path, registry: RunningServe, manifest: Manifest, proc: subprocess.CompletedProcess[str]
) -> dict[str, object]:
    assert proc.returncode == 0, proc.stderr
    source = tmp_path / "src" / "blobs" / "sha256"
    with httpx.Client(base_url=registry.url) as http:
        for desc in (manifest.config, *manifest.layers):
            assert desc is not None
            got = http.get(f"/v2/{REPOSITORY}/blobs/{desc.digest}")
            assert got.status_code == 200
            assert got.content == (source / desc.digest.encoded).read_bytes()
        tagged = http.get(f"/v2/{REPOSITORY}/manifests/1.0", headers={"Accept": manifest.media_type})
        assert tagged.content == manifest.raw
    assert list((tmp_path / "state").glob("*.json")) == []  # finished uploads leave no resume state
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def _total(manifest: Manifest) -> int:
    assert manifest.config is not None
    return manifest.config.size + sum(d.size for d in manifest.layers)


def test_503_on_the_upload_is_retried(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    _, manifest = source
    proxy.add(Fault.status(503, method="PUT", path=UPLOADS))
    result = _assert_stored(tmp_path, registry, manifest, _push(tmp_path, proxy))
    assert result["retries"] == 1
    assert result["blobs_uploaded"] == 2


def test_429_with_retry_after_on_the_session_start(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    _, manifest = source
    proxy.add(Fault.status(429, headers={"Retry-After": "1"}, method="POST", path=UPLOADS, times=2))
    result = _assert_stored(tmp_path, registry, manifest, _push(tmp_path, proxy))
    assert result["retries"] == 2


def test_connection_cut_mid_upload_resumes_from_the_registrys_offset(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    _, manifest = source
    layer = manifest.layers[0]
    proxy.add(Fault.drop_request(after=1_500_000, method="PUT", path=UPLOADS))
    _assert_stored(tmp_path, registry, manifest, _push(tmp_path, proxy, "--jobs", "1"))
    # Nothing sent twice: the bytes that reached the registry before the cut were not sent again.
    assert proxy.upload_bytes(path=UPLOADS) == _total(manifest)
    patches = proxy.exchanges("PATCH", UPLOADS)
    assert [e.request_bytes for e in patches] == [layer.size - 1_500_000]
    assert [e.status for e in proxy.exchanges("GET", UPLOADS)] == [204]


def test_chunked_upload_cut_in_the_second_chunk(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    _, manifest = source
    proxy.add(Fault.drop_request(after=100_000, method="PATCH", path=UPLOADS, skip=1))
    _assert_stored(tmp_path, registry, manifest, _push(tmp_path, proxy, "--chunk-size", "512KiB"))
    # The cut chunk is all-or-nothing on the registry (it had a Content-Range): only it is sent again.
    assert proxy.upload_bytes(path=UPLOADS) == _total(manifest) + 100_000


def test_persistent_503_fails_cleanly_and_keeps_no_tag(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    _, manifest = source
    proxy.add(Fault.status(503, method="PUT", path=UPLOADS, times=100))
    proc = _push(tmp_path, proxy, "--retries", "1", json_output=False)
    assert_user_error(proc, 1, "503")
    with httpx.Client(base_url=registry.url) as http:
        assert http.get(f"/v2/{REPOSITORY}/manifests/1.0").status_code == 404
        assert http.head(f"/v2/{REPOSITORY}/blobs/{manifest.layers[0].digest}").status_code == 404


def test_failed_push_resumes_in_the_next_run(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    _, manifest = source
    layer = manifest.layers[0]
    # The layer's upload (largest first, one at a time) is cut after 600 kB; with no retries the run fails.
    proxy.add(Fault.drop_request(after=600_000, method="PUT", path=UPLOADS + ".+"))
    proc = _push(tmp_path, proxy, "--retries", "0", "--jobs", "1", json_output=False)
    assert proc.returncode == 6, proc.stderr
    state = UploadStateStore(tmp_path / "state").load(proxy.host, REPOSITORY, str(layer.digest))
    assert state is not None and state.size == layer.size
    first_run = proxy.upload_bytes(path=UPLOADS)
    proxy.reset_counts()
    _assert_stored(tmp_path, registry, manifest, _push(tmp_path, proxy))
    assert proxy.upload_bytes(path=UPLOADS) == _total(manifest) - 600_000
    assert first_run >= 600_000


def test_lost_answer_to_the_final_put_is_not_an_upload_again(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    path, manifest = source
    # The registry stores the layer, but its answer comes too late for the client's 1 s timeout.
    proxy.add(Fault.stall(2.0, after=-1, method="PUT", path=UPLOADS))

    async def main() -> PushResult:
        async with Client(timeout=1.0, jobs=1) as client:
            return await client.push(f"{path}:1.0", Reference.parse(f"{proxy.host}/{REPOSITORY}:1.0"))

    result = anyio.run(main)
    assert result.retries == 1
    assert proxy.upload_bytes(path=UPLOADS) == _total(manifest)  # the retry found the blob stored
    with httpx.Client(base_url=registry.url) as http:
        tagged = http.get(f"/v2/{REPOSITORY}/manifests/1.0", headers={"Accept": manifest.media_type})
        assert tagged.content == manifest.raw


def test_resume_state_of_a_purged_session_falls_back_to_a_new_one(
    tmp_path: Path, source: tuple[Path, Manifest]
) -> None:
    _, manifest = source
    layer = manifest.layers[0]
    with run_serve(tmp_path / "purging", upload_purge_age=0.3) as server, run_fault_proxy(server.port) as proxy:
        proxy.add(Fault.drop_request(after=600_000, method="PUT", path=UPLOADS + ".+"))
        first = _push(tmp_path, proxy, "--retries", "0", "--jobs", "1", json_output=False)
        assert first.returncode == 6, first.stderr
        assert UploadStateStore(tmp_path / "state").load(proxy.host, REPOSITORY, str(layer.digest)) is not None
        time.sleep(0.5)  # the session is abandoned long enough to be purged by the next request
        proxy.reset_counts()
        _assert_stored(tmp_path, server, manifest, _push(tmp_path, proxy))
        assert [e.status for e in proxy.exchanges("GET", UPLOADS)] == [404]
        assert proxy.upload_bytes(path=UPLOADS) == _total(manifest)


def test_lost_answer_to_the_closing_put_of_a_chunked_upload(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy, source: tuple[Path, Manifest]
) -> None:
    path, manifest = source
    proxy.add(Fault.stall(2.0, after=-1, method="PUT", path=UPLOADS))

    async def main() -> PushResult:
        async with Client(timeout=1.0, jobs=1) as client:
            ref = Reference.parse(f"{proxy.host}/{REPOSITORY}:1.0")
            return await client.push(f"{path}:1.0", ref, chunk_size=512 * 1024)

    result = anyio.run(main)
    assert result.retries == 1
    # The closing PUT was sent twice; the registry answers a repeated close of a committed session as it did the
    # first (a commit is idempotent, so a client whose answer was lost may ask again anywhere); no bytes again.
    assert [e.status for e in proxy.exchanges("PUT", UPLOADS)][:2] == [201, 201]
    assert proxy.upload_bytes(path=UPLOADS) == _total(manifest)
    with httpx.Client(base_url=registry.url) as http:
        assert (
            http.get(f"/v2/{REPOSITORY}/blobs/{manifest.layers[0].digest}").content
            == (path / "blobs" / "sha256" / manifest.layers[0].digest.encoded).read_bytes()
        )
