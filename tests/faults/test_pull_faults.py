"""``regtool pull`` through the fault proxy: each fault ends in a byte-identical image or a clean failure.

Clean failure: the documented exit code, one ``error:`` line naming what failed, and nothing unverified in the
layout's ``blobs/`` (a partial may stay in the staging area, for a resume, unless its content was wrong).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import anyio

from regtool.client import Client
from regtool.client.results import PullResult
from regtool.digest import Digest
from regtool.image.blobstore import STAGING_DIR
from regtool.reference import Reference
from tests.cli.support import assert_user_error, regtool
from tests.faults.conftest import Seeded
from tests.support.faultproxy import Fault, FaultProxy


def _pull(tmp_path: Path, proxy: FaultProxy, seeded: Seeded, *args: str) -> subprocess.CompletedProcess[str]:
    return regtool("pull", seeded.ref(proxy.host), "out", "--json", *args, cwd=tmp_path)


def _blob_path(tmp_path: Path, digest: Digest) -> Path:
    return tmp_path / "out" / "blobs" / digest.algorithm / digest.encoded


def _partials(tmp_path: Path, digest: Digest | None = None) -> list[Path]:
    """Partials in the layout's staging area (of ``digest`` only, when given)."""
    staging = tmp_path / "out" / STAGING_DIR
    pattern = f"{digest.algorithm}-{digest.encoded}*.partial" if digest is not None else "*.partial"
    return sorted(staging.glob(pattern)) if staging.is_dir() else []


def _assert_identical(tmp_path: Path, seeded: Seeded, proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 0, proc.stderr
    for desc in (seeded.layer, seeded.config):
        assert _blob_path(tmp_path, desc.digest).read_bytes() == seeded.blob(desc.digest)
    assert _partials(tmp_path) == []
    result: dict[str, object] = json.loads(proc.stdout)
    assert result["digest"] == str(seeded.manifest.digest)
    return result


def _layer_path(seeded: Seeded) -> str:
    return f"/blobs/{seeded.layer.digest}"


def test_connection_dropped_mid_body_resumes_with_range(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(Fault.drop(after=700_000, path=_layer_path(seeded)))
    result = _assert_identical(tmp_path, seeded, _pull(tmp_path, proxy, seeded))
    layer_gets = proxy.exchanges("GET", _layer_path(seeded))
    assert [e.status for e in layer_gets] == [200, 206]
    # Nothing downloaded twice: the second request asked for the rest only.
    assert proxy.body_bytes("GET", _layer_path(seeded)) == seeded.layer.size
    assert result["bytes_downloaded"] == seeded.layer.size + seeded.config.size


def test_resume_against_a_registry_ignoring_range_starts_the_blob_over(
    tmp_path: Path, proxy: FaultProxy, seeded: Seeded
) -> None:
    # The retry asks for the rest, the registry sends the whole blob with a 200: it must not be appended.
    proxy.add(Fault.drop(after=700_000, path=_layer_path(seeded)))
    proxy.add(Fault.strip_range(path=_layer_path(seeded)))
    _assert_identical(tmp_path, seeded, _pull(tmp_path, proxy, seeded))
    layer_gets = proxy.exchanges("GET", _layer_path(seeded))
    assert [e.status for e in layer_gets] == [200, 200]
    assert proxy.body_bytes("GET", _layer_path(seeded)) == 700_000 + seeded.layer.size


def test_several_drops_in_one_blob(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(Fault.drop(after=300_000, path=_layer_path(seeded), times=3))
    _assert_identical(tmp_path, seeded, _pull(tmp_path, proxy, seeded, "--retries", "4"))
    assert proxy.body_bytes("GET", _layer_path(seeded)) == seeded.layer.size
    assert len(proxy.exchanges("GET", _layer_path(seeded))) == 4


def test_503_is_retried(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(Fault.status(503, method="GET", path=_layer_path(seeded), times=2))
    proxy.add(Fault.status(503, method="GET", path="/manifests/", times=1))
    _assert_identical(tmp_path, seeded, _pull(tmp_path, proxy, seeded))
    assert [e.status for e in proxy.exchanges("GET", _layer_path(seeded))] == [503, 503, 200]


def test_429_retry_after_seconds_is_honoured(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(Fault.status(429, headers={"Retry-After": "1"}, method="GET", path=_layer_path(seeded)))
    _assert_identical(tmp_path, seeded, _pull(tmp_path, proxy, seeded))
    first, second = proxy.exchanges("GET", _layer_path(seeded))
    assert first.status == 429 and second.status == 200
    assert second.start - first.start >= 0.95


def test_429_retry_after_http_date_is_honoured(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 4))
    proxy.add(Fault.status(429, headers={"Retry-After": when}, method="GET", path=_layer_path(seeded)))
    _assert_identical(tmp_path, seeded, _pull(tmp_path, proxy, seeded))
    first, second = proxy.exchanges("GET", _layer_path(seeded))
    # The date has one-second resolution: at least ~1 s must have passed.
    assert second.start - first.start >= 1.0


def test_persistent_503_fails_cleanly(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(Fault.status(503, method="GET", path=_layer_path(seeded), times=100))
    proc = _pull(tmp_path, proxy, seeded, "--retries", "1")
    assert proc.returncode == 1, proc.stderr
    assert "503" in proc.stderr and str(seeded.layer.digest) in proc.stderr
    assert not _blob_path(tmp_path, seeded.layer.digest).exists()
    assert len(proxy.exchanges("GET", _layer_path(seeded))) == 2


def test_flipped_byte_fails_with_integrity_error_and_keeps_nothing(
    tmp_path: Path, proxy: FaultProxy, seeded: Seeded
) -> None:
    proxy.add(Fault.flip(at=1_000_000, path=_layer_path(seeded)))
    proc = regtool("pull", seeded.ref(proxy.host), "out", "-q", cwd=tmp_path)
    line = assert_user_error(proc, 5, str(seeded.layer.digest))
    assert "digest" in line
    assert not _blob_path(tmp_path, seeded.layer.digest).exists()
    assert _partials(tmp_path, seeded.layer.digest) == []  # wrong content is never kept for a resume
    # Without the fault the same destination completes.
    _assert_identical(tmp_path, seeded, _pull(tmp_path, proxy, seeded))


def test_truncated_body_fails_cleanly(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(Fault.truncate(to=500_000, path=_layer_path(seeded), times=100))
    proc = regtool("pull", seeded.ref(proxy.host), "out", "-q", "--retries", "1", cwd=tmp_path)
    assert_user_error(proc, 5, str(seeded.layer.digest))
    assert not _blob_path(tmp_path, seeded.layer.digest).exists()
    assert _partials(tmp_path, seeded.layer.digest) == []


def test_drops_beyond_the_retries_keep_the_partial_for_the_next_run(
    tmp_path: Path, proxy: FaultProxy, seeded: Seeded
) -> None:
    proxy.add(Fault.drop(after=400_000, path=_layer_path(seeded), times=2))
    proc = regtool("pull", seeded.ref(proxy.host), "out", "-q", "--retries", "1", cwd=tmp_path)
    assert_user_error(proc, 6, str(seeded.layer.digest), "run the command again to resume")
    assert not _blob_path(tmp_path, seeded.layer.digest).exists()
    (partial,) = _partials(tmp_path, seeded.layer.digest)
    kept = partial.stat().st_size
    assert kept == 800_000
    assert partial.read_bytes() == seeded.blob(seeded.layer.digest)[:kept]
    proxy.reset_counts()
    _assert_identical(tmp_path, seeded, _pull(tmp_path, proxy, seeded))
    assert proxy.body_bytes("GET", _layer_path(seeded)) == seeded.layer.size - kept


def test_stalled_body_times_out_and_resumes(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    proxy.add(Fault.stall(3.0, after=1_100_000, path=_layer_path(seeded)))

    async def main() -> PullResult:
        async with Client(timeout=1.0) as client:
            return await client.pull(Reference.parse(seeded.ref(proxy.host)), tmp_path / "out")

    result = anyio.run(main)
    assert result.retries == 1
    blob = _blob_path(tmp_path, seeded.layer.digest)
    assert blob.read_bytes() == seeded.blob(seeded.layer.digest)
    first, second = proxy.exchanges("GET", _layer_path(seeded))
    assert first.status == 200 and second.status == 206
