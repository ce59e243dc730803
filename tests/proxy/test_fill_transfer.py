"""How a missed blob leaves the cache: each response is one ``sendfile(2)`` transfer that follows the fill as the
bytes arrive from upstream (``BlobFill.follow``), not a new transfer for every piece that lands."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest

from regtool.digest import Digest
from regtool.server import uvicorn_protocol, zerocopy
from regtool.server.zerocopy import Follow
from tests.proxy.conftest import mirror_of, push_image
from tests.support.faultproxy import Fault, run_fault_proxy
from tests.support.serve import run_serve


@pytest.fixture
def followed_sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(offset, count) of every zero-copy transfer that followed a file being written (the real send still runs)."""
    calls: list[tuple[int, int]] = []
    real = zerocopy.send_file

    async def recording(
        transport: Any, file: BinaryIO, offset: int, count: int, *, follow: Follow | None = None
    ) -> int:
        if follow is not None:
            calls.append((offset, count))
        return await real(transport, file, offset, count, follow=follow)

    monkeypatch.setattr(uvicorn_protocol, "send_file", recording)
    return calls


def test_a_miss_leaves_in_one_transfer_per_response_while_the_blob_arrives(
    tmp_path: Path, followed_sends: list[tuple[int, int]]
) -> None:
    with run_serve(tmp_path / "upstream") as upstream:
        image = push_image(upstream.host, tmp_path, "team/big", "1", [{"big.bin": os.urandom(6 << 20)}])
        layer = image.layers[0]
        digest = Digest.of(layer)
        with run_fault_proxy(upstream.port) as proxy, mirror_of(proxy.url, tmp_path / "cache") as cache:
            # The upstream pauses half-way, so both responses start while the fill is under way.
            proxy.add(Fault.stall(0.5, after=len(layer) // 2, path=f"/blobs/{digest}"))
            bodies: list[bytes] = []

            def get() -> None:
                bodies.append(httpx.get(f"{cache.url}/v2/team/big/blobs/{digest}", timeout=30).content)

            clients = [threading.Thread(target=get) for _ in range(2)]
            for client in clients:
                client.start()
            for client in clients:
                client.join(30)

            assert bodies == [layer, layer]
            assert len(proxy.exchanges("GET", f"/blobs/{digest}")) == 1
            # All but the last byte (held back until the digest matched) in one transfer each.
            assert followed_sends == [(0, len(layer) - 1)] * 2


def test_a_range_of_a_miss_follows_the_fill_too(tmp_path: Path, followed_sends: list[tuple[int, int]]) -> None:
    with run_serve(tmp_path / "upstream") as upstream:
        image = push_image(upstream.host, tmp_path, "team/big", "1", [{"big.bin": os.urandom(3 << 20)}])
        layer = image.layers[0]
        digest = Digest.of(layer)
        with run_fault_proxy(upstream.port) as proxy, mirror_of(proxy.url, tmp_path / "cache") as cache:
            proxy.add(Fault.stall(0.3, after=len(layer) // 2, path=f"/blobs/{digest}"))
            first, last = 1000, len(layer) - 1000
            response = httpx.get(
                f"{cache.url}/v2/team/big/blobs/{digest}", headers={"Range": f"bytes={first}-{last}"}, timeout=30
            )

            assert response.status_code == 206
            assert response.content == layer[first : last + 1]
            assert followed_sends == [(first, last - first)]
