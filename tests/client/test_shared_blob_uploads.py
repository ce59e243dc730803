"""Images copied or pushed at once that share a blob upload it once per repository (RegistryAPI.blob_upload_lock):
the others wait and find it present. Counted at a real ``regtool serve``."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from regtool.client import Client
from regtool.client.v2.copy import copy_image
from regtool.reference import Reference
from tests.support.images import BuiltImage, write_image
from tests.support.serve import RunningServe, run_serve

pytestmark = pytest.mark.anyio

BASE = {"base/os.bin": bytes(range(256)) * 1024}


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGTOOL_STATE_DIR", str(tmp_path / "state"))


def images(layout: Path, count: int) -> list[BuiltImage]:
    return [write_image(layout, f"t{i}", [BASE, {f"app-{i}.txt": str(i).encode()}]) for i in range(count)]


def uploads_of(server: RunningServe, repository: str, digest: object) -> int:
    """Closing PUTs of an upload session of ``digest`` into ``repository`` (one per upload)."""
    puts = server.requests.events("PUT", f"/v2/{repository}/blobs/uploads/")
    return sum(1 for e in puts if str(digest).replace(":", "%3A") in e.query or str(digest) in e.query)


async def test_concurrent_copies_upload_a_shared_blob_once(tmp_path: Path) -> None:
    built = images(tmp_path / "layout", 6)
    base = built[0].layer_digests[0]
    assert all(image.layer_digests[0] == base for image in built)
    with run_serve(tmp_path / "a", enable_v1=False) as source, run_serve(tmp_path / "b", enable_v1=False) as target:
        async with Client() as client:
            for i in range(len(built)):
                await client.push(f"{tmp_path / 'layout'}:t{i}", Reference(source.host, "app", f"t{i}"))
            target.requests.clear()
            async with anyio.create_task_group() as group:
                for i in range(len(built)):
                    group.start_soon(
                        copy_image,
                        client.api,
                        Reference(source.host, "app", f"t{i}"),
                        Reference(target.host, "app", f"t{i}"),
                    )
        assert uploads_of(target, "app", base) == 1
        assert uploads_of(target, "app", built[3].layer_digests[1]) == 1
        for image in built:
            head = target.requests.events("PUT", f"/v2/app/manifests/t{built.index(image)}")
            assert [e.status for e in head] == [201]


async def test_concurrent_pushes_upload_a_shared_blob_once(tmp_path: Path) -> None:
    built = images(tmp_path / "layout", 4)
    base = built[0].layer_digests[0]
    with run_serve(tmp_path / "r", enable_v1=False) as server:
        async with Client() as client, anyio.create_task_group() as group:
            for i in range(len(built)):
                group.start_soon(client.push, f"{tmp_path / 'layout'}:t{i}", Reference(server.host, "app", f"t{i}"))
        assert uploads_of(server, "app", base) == 1
        # Another repository gets its own upload (or a mount), not a wait on this one's.
        async with Client() as client:
            await client.push(f"{tmp_path / 'layout'}:t0", Reference(server.host, "other", "t0"))
        assert uploads_of(server, "app", base) == 1
