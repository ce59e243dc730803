"""v1 push and pull with the real client against a real ``regtool serve`` (protocols.md §2.2, §2.3)."""

from __future__ import annotations

import json
import os
import tarfile
import threading
from pathlib import Path

import pytest

from regtool import mediatypes as mt
from regtool.client import Client
from regtool.client.v1 import pull as v1pull
from regtool.client.v1.push import image_manifest, local_v1_layers
from regtool.digest import Digest
from regtool.errors import IntegrityError, NotFoundError, ProtocolError, UnsupportedProtocolError
from regtool.image.oci_layout import OciLayout
from regtool.image.source import open_source
from regtool.manifest import ImageConfig
from regtool.reference import Reference
from tests.support.serve import RunningServe, run_serve
from tests.v1.images import build_layout

pytestmark = pytest.mark.anyio


def ref(server: RunningServe, name: str = "team/app:1.0") -> Reference:
    return Reference.parse(f"{server.host}/{name}")


async def push_v1(layout_dir: Path, target: Reference) -> None:
    async with Client() as client:
        result = await client.push(str(layout_dir), target, protocol="v1")
    assert result.protocol == "v1"


def layout_config(layout: OciLayout) -> ImageConfig:
    manifest = layout.manifest(layout.resolve())
    assert manifest.config is not None
    return ImageConfig.parse(layout.read_blob(manifest.config.digest))


async def test_push_then_pull_round_trip_keeps_layers_and_config(tmp_path: Path) -> None:
    _source, _, blobs, config_raw = build_layout(tmp_path / "src", layers=3)
    with run_serve(tmp_path / "root") as server:
        target = ref(server)
        await push_v1(tmp_path / "src", target)
        async with Client() as client:
            result = await client.pull(target, tmp_path / "out", protocol="v1")
        assert result.protocol == "v1"
        assert result.blobs_downloaded == 3
    # The layout holds the spec's files only: no staging area left behind.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["blobs", "index.json", "oci-layout"]
    pulled = OciLayout.open(tmp_path / "out")
    manifest = pulled.manifest(pulled.resolve("1.0"))
    assert [pulled.read_blob(layer.digest) for layer in manifest.layers] == blobs
    original = json.loads(config_raw)
    config = layout_config(pulled)
    assert list(config.diff_ids) == original["rootfs"]["diff_ids"]
    assert config.config == original["config"]
    assert [h.get("created_by") for h in config.history] == [
        h["created_by"] for h in original["history"] if not h.get("empty_layer")
    ]
    assert result.digest == manifest.digest


async def test_pull_as_docker_archive_keeps_real_v1_ids(tmp_path: Path) -> None:
    build_layout(tmp_path / "src", layers=2)
    with open_source(str(tmp_path / "src")) as source:
        chain = [layer.image for layer in local_v1_layers(source, await image_manifest(source))[0]]
    with run_serve(tmp_path / "root") as server:
        target = ref(server)
        await push_v1(tmp_path / "src", target)
        async with Client() as client:
            await client.pull(target, tmp_path / "app.tar", protocol="v1")
    with tarfile.open(tmp_path / "app.tar") as tar:
        entry = json.loads(tar.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
        assert entry["Layers"] == [f"{image.id}/layer.tar" for image in chain]
        for image in chain:
            assert tar.extractfile(f"{image.id}/json").read() == image.json  # type: ignore[union-attr]
        repositories = json.loads(tar.extractfile("repositories").read())  # type: ignore[union-attr]
    assert repositories == {f"{target.repository_ref}": {"1.0": chain[-1].id}}


async def test_second_push_skips_every_image_and_uses_the_engine_order(tmp_path: Path) -> None:
    build_layout(tmp_path / "src", layers=2)
    with run_serve(tmp_path / "root") as server:
        target = ref(server)
        await push_v1(tmp_path / "src", target)
        calls = [(e.method, e.path, e.status) for e in server.requests.events() if e.path.startswith("/v1/")]
        writes = [c for c in calls if c[0] == "PUT"]
        assert writes[0][1:] == ("/v1/repositories/team/app/", 200)
        kinds = [path.rsplit("/", 1)[-1] for _, path, _ in writes[1:7]]
        assert kinds == ["json", "layer", "checksum"] * 2
        assert writes[7][1:] == ("/v1/repositories/team/app/tags/1.0", 200)
        assert writes[-1][1:] == ("/v1/repositories/team/app/images", 204)
        server.requests.clear()
        async with Client() as client:
            again = await client.push(str(tmp_path / "src"), target, protocol="v1")
        assert (again.blobs_uploaded, again.blobs_skipped) == (0, 2)
        assert not server.requests.events("PUT", "/layer")


async def test_v1_pull_walks_layers_serially_root_first(tmp_path: Path) -> None:
    build_layout(tmp_path / "src", layers=4, size=64 * 1024)
    with run_serve(tmp_path / "root", latency_ms=10) as server:
        target = ref(server)
        await push_v1(tmp_path / "src", target)
        server.requests.clear()
        async with Client(jobs=8) as client:
            await client.pull(target, tmp_path / "out", protocol="v1")
        events = server.requests.events("GET")
        layer_gets = [e for e in events if e.path.endswith("/layer")]
        assert len(layer_gets) == 4
        assert server.requests.max_overlap(layer_gets) == 1
        paths = [e.path for e in sorted(events, key=lambda e: e.start) if e.path.startswith("/v1/")]
        # The probe and the session each ping, as the engine's endpoint validation and NewSession did.
        assert paths[0] == "/v1/_ping"
        paths = [p for p in paths if p != "/v1/_ping"]
        top = paths[2].split("/")[3]
        assert paths[:3] == [
            "/v1/repositories/team/app/images",
            "/v1/repositories/team/app/tags/1.0",
            f"/v1/images/{top}/ancestry",
        ]
        ancestry = json.loads((tmp_path / "root" / "v1" / "images" / top / "ancestry").read_bytes())
        expected = []
        for image_id in reversed(ancestry):
            expected += [f"/v1/images/{image_id}/json", f"/v1/images/{image_id}/layer"]
        assert paths[3:] == expected


async def test_v1_pull_without_ancestry_walks_parents(tmp_path: Path) -> None:
    build_layout(tmp_path / "src", layers=3)
    with run_serve(tmp_path / "root") as server:
        target = ref(server)
        await push_v1(tmp_path / "src", target)
        images = tmp_path / "root" / "v1" / "images"
        chain = json.loads(
            next(p for p in images.glob("*/ancestry") if len(json.loads(p.read_bytes())) == 3).read_bytes()
        )
        for path in images.glob("*/ancestry"):
            path.unlink()
        server.requests.clear()
        async with Client() as client:
            await client.pull(target, tmp_path / "out", protocol="v1")
        json_gets = [e.path for e in server.requests.events("GET", "/json")]
    # top first (each JSON names the next parent), then layers root first with the JSON already known
    assert json_gets == [f"/v1/images/{i}/json" for i in chain]
    pulled = OciLayout.open(tmp_path / "out")
    assert len(pulled.manifest(pulled.resolve()).layers) == 3


def _corrupt_stored_layer(root: Path, layer: bytes) -> None:
    """Flip a byte near the end of the layer's blob in serve's store (which also holds the config and manifest
    that show the image over v2)."""
    digest = Digest.of(layer)
    data = root / "blobs" / "sha256" / digest.encoded[:2] / digest.encoded / "data"
    blob = bytearray(data.read_bytes())
    blob[-5] ^= 0xFF
    data.write_bytes(bytes(blob))


async def test_corrupt_layer_fails_payload_check_and_leaves_no_blob(tmp_path: Path) -> None:
    _, _, (layer,), _ = build_layout(tmp_path / "src", layers=1, size=4096)
    with run_serve(tmp_path / "root") as server:
        target = ref(server)
        await push_v1(tmp_path / "src", target)
        _corrupt_stored_layer(tmp_path / "root", layer)
        async with Client() as client:
            with pytest.raises(IntegrityError, match="payload checksum mismatch"):
                await client.pull(target, tmp_path / "out", protocol="v1")
            with pytest.raises(IntegrityError):
                await client.pull(target, tmp_path / "out.tar", protocol="v1")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.tar").exists()
    assert list(tmp_path.glob(".regtool-v1-*")) == []


async def test_errors_name_what_is_missing(tmp_path: Path) -> None:
    build_layout(tmp_path / "src", layers=1)
    with run_serve(tmp_path / "root") as server:
        await push_v1(tmp_path / "src", ref(server))
        async with Client() as client:
            with pytest.raises(NotFoundError, match="Tag not found"):
                await client.pull(ref(server, "team/app:nope"), tmp_path / "out", protocol="v1")
            with pytest.raises(NotFoundError):
                await client.pull(ref(server, "team/other:1.0"), tmp_path / "out", protocol="v1")
            with pytest.raises(UnsupportedProtocolError, match="digest"):
                await client.pull(ref(server, "team/app@sha256:" + "0" * 64), tmp_path / "out", protocol="v1")


async def test_parallel_v1_pull_is_opt_in(tmp_path: Path) -> None:
    build_layout(tmp_path / "src", layers=4, size=256 * 1024)
    with run_serve(tmp_path / "root", latency_ms=30) as server:
        target = ref(server)
        await push_v1(tmp_path / "src", target)
        server.requests.clear()
        async with Client() as client:
            await client.pull(target, tmp_path / "out", protocol="v1", v1_jobs=4)
        layer_gets = server.requests.events("GET", "/layer")
        assert server.requests.max_overlap(layer_gets) > 1
    pulled = OciLayout.open(tmp_path / "out")
    assert len(pulled.manifest(pulled.resolve()).layers) == 4


async def test_push_a_docker_archive_over_v1(tmp_path: Path) -> None:
    _, _, _, config_raw = build_layout(tmp_path / "src", layers=2)
    with run_serve(tmp_path / "root") as server:
        async with Client() as client:
            await client.push(str(tmp_path / "src"), ref(server), protocol="v1")
            await client.pull(ref(server), tmp_path / "app.tar", protocol="v1")
            pushed = await client.push(str(tmp_path / "app.tar"), ref(server, "team/from-archive:1"), protocol="v1")
            assert pushed.recompressed
            await client.pull(ref(server, "team/from-archive:1"), tmp_path / "out", protocol="v1")
    config = layout_config(OciLayout.open(tmp_path / "out"))
    assert list(config.diff_ids) == json.loads(config_raw)["rootfs"]["diff_ids"]


@pytest.mark.parametrize("kind", ["plain", "xz", "bzip2"])
async def test_v1_pull_sniffs_the_layer_compression(tmp_path: Path, kind: str) -> None:
    _, _, blobs, config_raw = build_layout(tmp_path / "src", layers=2, kind=kind)
    with run_serve(tmp_path / "root") as server:
        await push_v1(tmp_path / "src", ref(server))
        async with Client() as client:
            await client.pull(ref(server), tmp_path / "out", protocol="v1")
    pulled = OciLayout.open(tmp_path / "out")
    manifest = pulled.manifest(pulled.resolve("1.0"))
    diff_ids = json.loads(config_raw)["rootfs"]["diff_ids"]
    assert list(layout_config(pulled).diff_ids) == diff_ids
    # Plain tars are kept as they came; xz and bzip2, which OCI has no media type for, are stored decompressed.
    assert [layer.media_type for layer in manifest.layers] == [mt.OCI_LAYER] * 2
    stored = [pulled.read_blob(layer.digest) for layer in manifest.layers]
    if kind == "plain":
        assert stored == blobs
    else:
        assert [str(layer.digest) for layer in manifest.layers] == diff_ids
        assert all(blob[257:262] == b"ustar" for blob in stored)


async def test_v1_pull_never_fsyncs_on_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_layout(tmp_path / "src", layers=2)
    loop_thread = threading.current_thread()
    on_loop: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        on_loop.append(threading.current_thread() is loop_thread)
        real_fsync(fd)

    with run_serve(tmp_path / "root") as server:
        await push_v1(tmp_path / "src", ref(server))
        monkeypatch.setattr(v1pull.os, "fsync", fsync)
        async with Client() as client:
            await client.pull(ref(server), tmp_path / "out", protocol="v1")
    assert on_loop and not any(on_loop)


async def test_a_failed_v1_pull_takes_back_only_what_it_made(tmp_path: Path) -> None:
    # The same rule as a v2 pull's: a directory the user made stays, and an image another pull finished into
    # the same new layout meanwhile stays whole.
    _, _, (layer,), _ = build_layout(tmp_path / "src", layers=1, size=4096)
    with run_serve(tmp_path / "root") as server:
        target = ref(server)
        await push_v1(tmp_path / "src", target)
        _corrupt_stored_layer(tmp_path / "root", layer)
        made = tmp_path / "made"
        made.mkdir()
        async with Client() as client:
            with pytest.raises(IntegrityError):
                await client.pull(target, made, protocol="v1")
        assert made.is_dir()
        assert list(made.iterdir()) == []


def test_a_registry_serving_an_image_json_that_does_not_parse_is_its_fault() -> None:
    with pytest.raises(ProtocolError, match="v1 image abc at there"):
        v1pull.registry_image(b"{not json", where="v1 image abc at there")


async def test_a_v1_pull_removes_what_a_killed_one_left(tmp_path: Path) -> None:
    # A v1 layer is fetched whole again, never resumed: a killed pull's work directory beside an archive and its
    # partials in a layout's staging area are only litter, which the next pull removes.
    import subprocess

    build_layout(tmp_path / "src", layers=1, size=4096)
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan_dir = tmp_path / f".regtool-v1-{dead.pid}-abcd1234"
    (orphan_dir / "layout").mkdir(parents=True)
    layout_dir = tmp_path / "out"
    OciLayout.open(layout_dir, create=True)
    staging = layout_dir / ".regtool-staging"
    staging.mkdir()
    orphan_partial = staging / f"v1-{dead.pid}-{'1' * 64}.abc.partial"
    orphan_partial.write_bytes(b"half a layer")
    with run_serve(tmp_path / "root") as server:
        target = ref(server)
        await push_v1(tmp_path / "src", target)
        async with Client() as client:
            await client.pull(target, tmp_path / "out.tar", protocol="v1")
            await client.pull(target, layout_dir, protocol="v1")
    assert not orphan_dir.exists()
    assert not orphan_partial.exists()
    assert list(tmp_path.glob(".regtool-v1-*")) == []
