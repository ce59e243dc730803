"""A copy between registries relays each blob from the source's GET into the target's upload in one worker
thread (``copy._RelayBody``, ``BlobFetcher.relay_sender``). What can go wrong on the source's side of that relay:
its connection breaking mid-blob, its ignoring a ``Range`` when the copy continues, its bytes not matching.

Two real ``regtool serve`` instances; the SOURCE sits behind the fault proxy, which cuts, strips or flips what it
serves and counts the bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

from regtool.client import Client
from regtool.client.v2.copy import CopyResult
from regtool.errors import IntegrityError
from regtool.manifest import Descriptor, Manifest
from regtool.reference import Reference
from tests.support.faultproxy import Fault, FaultProxy, run_fault_proxy
from tests.support.images import write_random_image
from tests.support.serve import RunningServe, run_serve

LAYER_SIZE = 6 << 20
CUT = 2_500_000


@dataclass(frozen=True)
class Setup:
    source: RunningServe
    target: RunningServe
    proxy: FaultProxy
    manifest: Manifest
    tmp: Path

    @property
    def layer(self) -> Descriptor:
        return self.manifest.layers[0]

    @property
    def layer_path(self) -> str:
        return f"/blobs/{self.layer.digest}"

    def blob_bytes(self, desc: Descriptor) -> bytes:
        encoded = desc.digest.encoded
        return (self.tmp / "src" / "blobs" / "sha256" / encoded).read_bytes()

    def layer_gets(self) -> list[int]:
        """The bytes the proxy relayed for each GET of the layer, in order."""
        return [e.response_bytes for e in self.proxy.exchanges("GET", self.layer_path)]


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.setenv("REGTOOL_STATE_DIR", str(tmp_path / "state"))
    manifest = write_random_image(tmp_path / "src", "1.0", count=1, size=LAYER_SIZE)
    with (
        run_serve(tmp_path / "a") as source,
        run_serve(tmp_path / "b") as target,
        run_fault_proxy(source.port) as proxy,
    ):

        async def seed() -> None:
            async with Client() as client:
                await client.push(f"{tmp_path / 'src'}:1.0", Reference.parse(f"{source.host}/team/app:1.0"))

        anyio.run(seed)
        proxy.reset_counts()
        yield Setup(source, target, proxy, manifest, tmp_path)


def _copy(setup: Setup, *, retries: int = 3) -> CopyResult:
    async def main() -> CopyResult:
        async with Client(jobs=1, retries=retries) as client:
            return await client.copy(
                Reference.parse(f"{setup.proxy.host}/team/app:1.0"),
                Reference.parse(f"{setup.target.host}/mirror/app:1.0"),
            )

    return anyio.run(main)


def _target_blob(setup: Setup, desc: Descriptor) -> httpx.Response:
    return httpx.get(f"{setup.target.url}/v2/mirror/app/blobs/{desc.digest}")


def _assert_copied(setup: Setup) -> None:
    assert setup.manifest.config is not None
    for desc in (setup.manifest.config, setup.layer):
        got = _target_blob(setup, desc)
        assert got.status_code == 200
        assert got.content == setup.blob_bytes(desc)
    tagged = httpx.get(f"{setup.target.url}/v2/mirror/app/manifests/1.0", headers={"Accept": setup.manifest.media_type})
    assert tagged.content == setup.manifest.raw


def test_a_relayed_blob_arrives_whole_through_one_get(setup: Setup) -> None:
    result = _copy(setup)
    _assert_copied(setup)
    assert setup.layer_gets() == [setup.layer.size]
    assert result.blobs_copied == 2


def test_a_source_cut_mid_blob_is_opened_again_where_the_target_session_stands(setup: Setup) -> None:
    setup.proxy.add(Fault.drop(after=CUT, path=setup.layer_path))
    result = _copy(setup)
    _assert_copied(setup)
    first, *rest = setup.layer_gets()
    assert first == CUT
    # The rest came with a Range from where the target's session stood: nothing past what the cut left missing
    # was fetched twice, and the whole layer arrived.
    assert len(rest) == 1
    assert setup.layer.size - CUT <= rest[0] <= setup.layer.size
    assert result.blobs_copied == 2


def test_a_source_that_ignores_the_range_is_read_from_the_start_and_hashed_whole(setup: Setup) -> None:
    setup.proxy.add(Fault.drop(after=CUT, path=setup.layer_path), Fault.strip_range(path=setup.layer_path))
    _copy(setup)
    _assert_copied(setup)
    assert setup.layer_gets() == [CUT, setup.layer.size]


def test_a_flipped_byte_from_the_source_never_completes_the_blob_at_the_target(setup: Setup) -> None:
    setup.proxy.add(Fault.flip(at=LAYER_SIZE - 100, path=setup.layer_path))
    with pytest.raises(IntegrityError, match=str(setup.layer.digest)):
        _copy(setup)
    assert _target_blob(setup, setup.layer).status_code == 404
    assert httpx.get(f"{setup.target.url}/v2/mirror/app/manifests/1.0").status_code == 404
    assert not list((setup.tmp / "b").glob("uploads/*"))
    assert list((setup.tmp / "state").glob("*.json")) == []


def test_the_two_registries_are_asked_about_at_once(setup: Setup) -> None:
    # The source's answer to the ping is held back: the target's ping arrives while it is, not after.
    setup.proxy.add(Fault.stall(1.0, path=r"^/v2/$"))
    setup.target.requests.clear()
    _copy(setup)
    _assert_copied(setup)
    (source_ping,) = setup.proxy.exchanges("GET", r"^/v2/$")
    target_pings = [e for e in setup.target.requests.events() if e.method == "GET" and e.path == "/v2/"]
    assert target_pings
    assert source_ping.end is not None
    assert target_pings[0].start < source_ping.end - 0.5
