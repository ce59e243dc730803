"""A large blob fetched over several Range connections (rangefetch.py), through the fault proxy: verified as
one blob, resumed per range after a cut, and fetched in one stream when the registry ignores ranges."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from regtool.client import Client
from regtool.client.results import PullResult
from regtool.client.v2.rangefetch import SplitPolicy, plan_segments
from regtool.errors import TransportError
from regtool.image.blobstore import STAGING_DIR
from regtool.protocol.ranges import parse_content_range
from regtool.reference import Reference
from tests.faults.conftest import Seeded
from tests.support.faultproxy import Fault, FaultProxy

SPLIT = SplitPolicy(threshold=1 << 20, parts=4, remote_only=False)


def _pull(tmp_path: Path, proxy: FaultProxy, seeded: Seeded, **options: object) -> PullResult:
    async def main() -> PullResult:
        async with Client(split=SPLIT, **options) as client:  # type: ignore[arg-type]
            return await client.pull(Reference.parse(seeded.ref(proxy.host)), tmp_path / "out")

    return anyio.run(main)


def _check(tmp_path: Path, seeded: Seeded) -> None:
    blob = tmp_path / "out" / "blobs" / "sha256" / seeded.layer.digest.encoded
    assert blob.read_bytes() == seeded.blob(seeded.layer.digest)
    staging = tmp_path / "out" / STAGING_DIR
    assert not staging.is_dir() or not any(p for p in staging.iterdir() if seeded.layer.digest.encoded in p.name)


def test_split_download_uses_ranges_and_verifies_the_whole(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    layer = f"/blobs/{seeded.layer.digest}"
    result = _pull(tmp_path, proxy, seeded)
    _check(tmp_path, seeded)
    gets = proxy.exchanges("GET", layer)
    assert sorted(e.status for e in gets) == [206] * 4
    assert proxy.body_bytes("GET", layer) == seeded.layer.size
    assert result.bytes_downloaded == seeded.layer.size + seeded.config.size


def test_a_cut_range_resumes_alone(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    layer = f"/blobs/{seeded.layer.digest}"
    proxy.add(Fault.drop(after=200_000, path=layer, times=2))
    result = _pull(tmp_path, proxy, seeded)
    _check(tmp_path, seeded)
    assert len(proxy.exchanges("GET", layer)) == 6
    assert proxy.body_bytes("GET", layer) == seeded.layer.size  # nothing fetched twice
    assert result.retries == 2


def test_a_registry_ignoring_ranges_gets_one_stream(tmp_path: Path, proxy: FaultProxy, seeded: Seeded) -> None:
    layer = f"/blobs/{seeded.layer.digest}"
    proxy.add(Fault.strip_range(path=layer, times=100))
    _pull(tmp_path, proxy, seeded, per_registry=1)
    _check(tmp_path, seeded)
    statuses = [e.status for e in proxy.exchanges("GET", layer)]
    # The first range came back whole (200): the split was abandoned for one plain GET.
    assert statuses[0] == 200 and statuses[-1] == 200


def test_the_default_policy_leaves_loopback_to_one_stream() -> None:
    policy = SplitPolicy(threshold=10, parts=2)
    assert not policy.applies(100, "http://127.0.0.1:5000/v2/a/blobs/sha256:x")
    assert not policy.applies(100, "http://localhost:5000/v2/a/blobs/sha256:x")
    assert policy.applies(100, "https://registry.example/v2/a/blobs/sha256:x")
    assert not policy.applies(9, "https://registry.example/v2/a/blobs/sha256:x")


def test_plan_and_content_range() -> None:
    assert plan_segments(10, 0, 3) == [
        plan_segments(10, 0, 3)[0],
        plan_segments(10, 3, 3)[0],
        plan_segments(10, 6, 3)[0],
    ]
    assert [(s.start, s.end) for s in plan_segments(10, 0, 3)] == [(0, 3), (3, 6), (6, 10)]
    assert [(s.start, s.end) for s in plan_segments(10, 4, 3)] == [(4, 6), (6, 10)]
    assert plan_segments(10, 10, 3) == []
    assert parse_content_range("bytes 0-99/100") == (0, 99, 100)
    assert parse_content_range("bytes 5-9/*") == (5, 9, None)
    assert parse_content_range("bytes 5-100/100") is None
    assert parse_content_range("bytes 9-5/100") is None
    assert parse_content_range(None) is None


def test_a_failed_split_download_resumes_every_range_in_the_next_run(
    tmp_path: Path, proxy: FaultProxy, seeded: Seeded
) -> None:
    layer = f"/blobs/{seeded.layer.digest}"
    # Every range is cut after 100 kB and there are no retries: the run fails, keeping what each range got.
    proxy.add(Fault.drop(after=100_000, path=layer, times=4))
    with pytest.raises(TransportError, match="run the command again to resume"):
        _pull(tmp_path, proxy, seeded, retries=0)
    staging = tmp_path / "out" / STAGING_DIR
    kept = sum(p.stat().st_size for p in staging.iterdir() if seeded.layer.digest.encoded in p.name)
    assert 0 < kept < seeded.layer.size
    proxy.reset_counts()
    _pull(tmp_path, proxy, seeded)
    _check(tmp_path, seeded)
    assert proxy.body_bytes("GET", layer) == seeded.layer.size - kept
