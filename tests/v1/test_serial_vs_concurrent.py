"""Proof from the server's request log: a v1 pull never overlaps two layer downloads; a v2 pull does."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from regtool.client import Client
from regtool.reference import Reference
from tests.support.serve import RequestLog, run_serve
from tests.v1.images import build_layout, push_v2_raw

pytestmark = pytest.mark.anyio


async def test_v1_pull_is_serial_and_v2_pull_is_concurrent(tmp_path: Path) -> None:
    layout, descriptor, _, _ = build_layout(tmp_path / "src", layers=8, size=128 * 1024)
    with run_serve(tmp_path / "root", latency_ms=25) as server:
        image = Reference.parse(f"{server.host}/team/app:1")
        push_v2_raw(server.url, layout, descriptor, "team/app", "1")
        async with Client() as client:
            await client.push(str(tmp_path / "src"), image, protocol="v1")

        server.requests.clear()
        async with Client(jobs=8) as client:
            v1 = await client.pull(image, tmp_path / "v1", protocol="v1")
        v1_layers = server.requests.events("GET", "/layer")

        server.requests.clear()
        async with Client(jobs=8) as client:
            v2 = await client.pull(image, tmp_path / "v2", protocol="v2")
        v2_blobs = [e for e in server.requests.events("GET", "/blobs/") if e.status == 200]

    assert len(v1_layers) == 8
    assert RequestLog.max_overlap(v1_layers) == 1
    # Strictly one after another: each layer GET starts after the previous one ended.
    ordered = sorted(v1_layers, key=lambda e: e.start)
    assert all(later.start >= earlier.end for earlier, later in itertools.pairwise(ordered))
    assert len(v2_blobs) == 9  # eight layers and the config
    assert RequestLog.max_overlap(v2_blobs) > 1
    assert (v1.protocol, v2.protocol) == ("v1", "v2")
    assert v2.seconds < v1.seconds
