"""A registry that stops sending mid-body: the caller's cancellation (Ctrl-C, a timeout) ends the transfer at once,
and the event loop never waits for the read timeout (a thread blocked on the silent connection is woken)."""

from __future__ import annotations

import asyncio
import random
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest

from regtool.client import Client
from regtool.client.net.connections import ConnectionPool, PoolTransport
from regtool.image.blobstore import STAGING_DIR
from regtool.reference import Reference
from tests.client.fakeregistry import V2_HEADER, Reply, fake_registry
from tests.support.images import image_manifest

pytestmark = pytest.mark.anyio

READ_TIMEOUT = 20.0  # what the old code waited for; every bound below is far under it


async def test_a_cancelled_read_of_a_silent_body_neither_waits_nor_holds_up_the_event_loop() -> None:
    release = threading.Event()
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    with fake_registry() as fake:
        fake.route("GET", "/big", Reply(200, {}, b"x" * 100, content_length=5_000_000, stall=release))
        pool = ConnectionPool(ssl.create_default_context(), READ_TIMEOUT)
        ticking = asyncio.ensure_future(ticker())
        try:
            async with httpx.AsyncClient(transport=PoolTransport(pool)) as http:
                response = await http.send(http.build_request("GET", f"{fake.url}/big"), stream=True)
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.3):
                        async for _ in response.aiter_raw():
                            pass
                asked = time.monotonic()
                await response.aclose()
                assert time.monotonic() - asked < 2
        finally:
            ticking.cancel()
            release.set()
            pool.close()
    assert max(gaps) < 2, "the event loop went on while the connection was abandoned"


async def test_a_pull_cancelled_while_a_blob_is_silent_ends_at_once_and_keeps_what_came(tmp_path: Path) -> None:
    image = image_manifest([{"big.bin": random.Random(5).randbytes(3 << 20)}])
    layer = image.manifest.layers[0]
    release = threading.Event()
    headers = {**V2_HEADER, "Content-Type": image.manifest.media_type}
    with fake_registry() as fake:
        fake.route("GET", "/v2/team/app/manifests/1", Reply(200, headers, image.manifest.raw))
        for digest, data in image.blobs.items():
            fake.route("GET", f"/v2/team/app/blobs/{digest}", Reply(200, dict(V2_HEADER), data))
        data = image.blobs[layer.digest]
        fake.route(
            "GET",
            f"/v2/team/app/blobs/{layer.digest}",
            Reply(200, dict(V2_HEADER), data[: 1 << 20], content_length=len(data), stall=release),
        )
        try:
            async with Client(timeout=READ_TIMEOUT) as client:
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(1.5):
                        await client.pull(Reference.parse(f"{fake.host}/team/app:1"), tmp_path / "out")
                took = time.monotonic() - started
                assert took < 4.5, f"the pull took {took:.1f} s: it waited for the read timeout, not the cancellation"
        finally:
            release.set()
    partial = tmp_path / "out" / STAGING_DIR / f"sha256-{layer.digest.encoded}.partial"
    assert partial.stat().st_size == 1 << 20, "the bytes that came are kept for a resume"
