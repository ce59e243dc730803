"""A ``regtool pull`` / ``regtool push`` killed mid-transfer (SIGKILL, or Ctrl-C) and run again: the second run
completes and moves only what the first did not (bytes counted at the fault proxy).

The proxy throttles bodies so the kill lands mid-blob; the second run goes at full speed.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from regtool.digest import Digest
from regtool.image.blobstore import STAGING_DIR
from tests.cli.support import regtool
from tests.faults.conftest import REPOSITORY, Seeded, push_with_client
from tests.support.faultproxy import FaultProxy
from tests.support.images import write_image, write_random_image
from tests.support.serve import RunningServe

RATE = 1 << 20  # bytes per second through the proxy during the first run
UPLOADS = r"/blobs/uploads/"


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", "NO_PROXY": "127.0.0.1", "REGTOOL_STATE_DIR": str(tmp_path / "state")}
    return subprocess.Popen(
        [sys.executable, "-m", "regtool", *args],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[str], sig: int) -> tuple[str, str]:
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_pull_killed_mid_blob_resumes_with_only_the_rest(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    layer = f"/blobs/{seeded.layer.digest}"
    proxy.throttle(RATE)
    proc = _start(tmp_path, "pull", seeded.ref(proxy.host), "out", "-q")
    # The client writes in 1 MiB pieces: wait until the first one must be on disk.
    _wait_until(lambda: proxy.body_bytes("GET", layer) >= 1_400_000, "the layer download")
    _stop(proc, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    partial = tmp_path / "out" / STAGING_DIR / f"sha256-{seeded.layer.digest.encoded}.partial"
    kept = partial.stat().st_size
    assert 0 < kept < seeded.layer.size
    assert not (tmp_path / "out" / "blobs" / "sha256" / seeded.layer.digest.encoded).exists()

    proxy.throttle(None)
    proxy.reset_counts()
    second = regtool("pull", seeded.ref(proxy.host), "out", "-q", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert proxy.body_bytes("GET", layer) == seeded.layer.size - kept
    (ranged,) = proxy.exchanges("GET", layer)
    assert ranged.status == 206
    blob = tmp_path / "out" / "blobs" / "sha256" / seeded.layer.digest.encoded
    assert blob.read_bytes() == seeded.blob(seeded.layer.digest)
    assert not partial.exists()


def test_pull_interrupted_by_ctrl_c_exits_promptly_and_resumes(
    tmp_path: Path, proxy: FaultProxy, seeded: Seeded
) -> None:
    layer = f"/blobs/{seeded.layer.digest}"
    proxy.throttle(RATE)
    proc = _start(tmp_path, "pull", seeded.ref(proxy.host), "out", "-q")
    # The client writes in 1 MiB pieces: wait until the first one must be on disk.
    _wait_until(lambda: proxy.body_bytes("GET", layer) >= 1_400_000, "the layer download")
    asked = time.monotonic()
    _, stderr = _stop(proc, signal.SIGINT)
    assert time.monotonic() - asked < 5
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "resume" in stderr.strip().splitlines()[-1]
    partial = tmp_path / "out" / STAGING_DIR / f"sha256-{seeded.layer.digest.encoded}.partial"
    kept = partial.stat().st_size
    assert kept > 0

    proxy.throttle(None)
    proxy.reset_counts()
    second = regtool("pull", seeded.ref(proxy.host), "out", "-q", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert proxy.body_bytes("GET", layer) == seeded.layer.size - kept


def test_push_killed_mid_upload_resumes_with_only_the_rest(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy
) -> None:
    # Larger than the socket buffers between client and proxy, which still deliver after the kill.
    manifest = write_random_image(tmp_path / "src", "1.0", count=1, size=6 << 20)
    layer = manifest.layers[0]
    proxy.throttle(RATE)
    target = f"{proxy.host}/{REPOSITORY}:1.0"
    proc = _start(tmp_path, "push", "src:1.0", target, "-q", "--jobs", "1")
    _wait_until(lambda: proxy.upload_bytes("PUT", UPLOADS) >= 1_000_000, "the layer upload")
    _stop(proc, signal.SIGKILL)
    # The registry keeps what reached it; wait until it has seen the connection go.
    _wait_until(lambda: all(e.end is not None for e in proxy.exchanges()), "the proxy to finish relaying")
    sent_first = proxy.upload_bytes("PUT", UPLOADS)
    assert 1_000_000 <= sent_first < layer.size
    assert list((tmp_path / "state").glob("*.json"))

    proxy.throttle(None)
    proxy.reset_counts()
    second = regtool("push", "src:1.0", target, "-q", cwd=tmp_path, env={"REGTOOL_STATE_DIR": str(tmp_path / "state")})
    assert second.returncode == 0, second.stderr
    assert manifest.config is not None
    # Only the rest of the layer (and the config, which the first run never reached) went up again.
    assert proxy.upload_bytes(path=UPLOADS) == layer.size - sent_first + manifest.config.size
    with httpx.Client(base_url=registry.url) as http:
        got = http.get(f"/v2/{REPOSITORY}/blobs/{layer.digest}")
        assert got.content == (tmp_path / "src" / "blobs" / "sha256" / layer.digest.encoded).read_bytes()
        assert http.get(f"/v2/{REPOSITORY}/manifests/1.0", headers={"Accept": manifest.media_type}).content == (
            manifest.raw
        )
    assert list((tmp_path / "state").glob("*.json")) == []


def test_docker_archive_pull_killed_resumes_too(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    layer = f"/blobs/{seeded.layer.digest}"
    proxy.throttle(RATE)
    proc = _start(tmp_path, "pull", seeded.ref(proxy.host), "out.tar", "-q")
    _wait_until(lambda: proxy.body_bytes("GET", layer) >= 1_400_000, "the layer download")
    _stop(proc, signal.SIGKILL)
    work = tmp_path / ".out.tar.regtool-pull"
    kept = (work / STAGING_DIR / f"sha256-{seeded.layer.digest.encoded}.partial").stat().st_size
    assert kept > 0
    assert not (tmp_path / "out.tar").exists()

    proxy.throttle(None)
    proxy.reset_counts()
    second = regtool("pull", seeded.ref(proxy.host), "out.tar", "-q", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert proxy.body_bytes("GET", layer) == seeded.layer.size - kept
    assert not work.exists()
    # The layer's tar (a docker-archive holds it uncompressed) is in the archive, whatever the member is called.
    found = []
    with tarfile.open(tmp_path / "out.tar") as archive:
        for member in archive.getmembers():
            extracted = archive.extractfile(member) if member.isfile() else None
            if extracted is not None:
                with extracted:
                    found.append(Digest.of(extracted.read()))
    layer_tar = seeded.blob(seeded.layer.digest)
    if seeded.layer.media_type.endswith("gzip"):
        layer_tar = gzip.decompress(layer_tar)
    assert Digest.of(layer_tar) in found


def test_push_interrupted_by_ctrl_c_exits_promptly_and_resumes(tmp_path: Path, proxy: FaultProxy) -> None:
    manifest = write_random_image(tmp_path / "src", "1.0", count=1, size=6 << 20)
    layer = manifest.layers[0]
    proxy.throttle(RATE)
    target = f"{proxy.host}/{REPOSITORY}:1.0"
    proc = _start(tmp_path, "push", "src:1.0", target, "-q", "--jobs", "1")
    _wait_until(lambda: proxy.upload_bytes("PUT", UPLOADS) >= 1_000_000, "the layer upload")
    asked = time.monotonic()
    _, stderr = _stop(proc, signal.SIGINT)
    assert time.monotonic() - asked < 5
    assert proc.returncode == 130, stderr
    assert "resume" in stderr.strip().splitlines()[-1]
    _wait_until(lambda: all(e.end is not None for e in proxy.exchanges()), "the proxy to finish relaying")
    sent_first = proxy.upload_bytes("PUT", UPLOADS)
    assert list((tmp_path / "state").glob("*.json"))

    proxy.throttle(None)
    proxy.reset_counts()
    env = {"REGTOOL_STATE_DIR": str(tmp_path / "state")}
    second = regtool("push", "src:1.0", target, "-q", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert manifest.config is not None
    assert proxy.upload_bytes(path=UPLOADS) == layer.size - sent_first + manifest.config.size


def test_archive_pull_killed_after_a_layer_was_placed_fetches_only_the_others(
    tmp_path: Path, registry: RunningServe, proxy: FaultProxy
) -> None:
    # The first layer is small: placed in the archive while the large second one still downloads.
    image = write_image(
        tmp_path / "src", "1.0", [{"small.bin": os.urandom(64 << 10)}, {"large.bin": os.urandom(6 << 20)}]
    )
    small, large = (f"/blobs/{layer.digest}" for layer in image.manifest.layers)
    push_with_client(f"{tmp_path / 'src'}:1.0", f"{registry.host}/{REPOSITORY}:1.0")
    proxy.throttle(RATE)
    proc = _start(tmp_path, "pull", f"{proxy.host}/{REPOSITORY}:1.0", "out.tar", "-q")
    _wait_until(lambda: proxy.body_bytes("GET", large) >= 1_400_000, "the large layer's download")
    assert proxy.body_bytes("GET", small) == image.manifest.layers[0].size
    _stop(proc, signal.SIGKILL)
    assert not (tmp_path / "out.tar").exists()

    proxy.throttle(None)
    proxy.reset_counts()
    second = regtool("pull", f"{proxy.host}/{REPOSITORY}:1.0", "out.tar", "-q", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert proxy.body_bytes("GET", small) == 0, "the placed layer's blob was kept for the resume"
    assert 0 < proxy.body_bytes("GET", large) < image.manifest.layers[1].size
    assert not (tmp_path / ".out.tar.regtool-pull").exists()
    with tarfile.open(tmp_path / "out.tar") as archive:
        names = [m.name for m in archive.getmembers() if m.name.endswith("/layer.tar")]
        assert len(names) == 2
        for name, diff_id in zip(names, image.diff_ids, strict=True):
            extracted = archive.extractfile(name)
            assert extracted is not None
            assert str(Digest.of(extracted.read())) == diff_id
