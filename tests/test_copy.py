"""``Client.copy`` registry to registry, across protocols, against real ``regtool serve`` instances."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest

from regtool.client import Client
from regtool.errors import IntegrityError
from regtool.image.oci_layout import OciLayout
from regtool.manifest import ImageConfig
from regtool.protocol import mediatypes as mt
from regtool.reference import Reference
from tests.support.serve import RunningServe, run_serve
from tests.v1.images import build_layout, push_v2_raw

pytestmark = pytest.mark.anyio


def ref(server: RunningServe, name: str) -> Reference:
    return Reference.parse(f"{server.host}/{name}")


def pulled_image(path: Path) -> tuple[list[bytes], ImageConfig]:
    layout = OciLayout.open(path)
    manifest = layout.manifest(layout.resolve())
    assert manifest.config is not None
    layers = [layout.read_blob(layer.digest) for layer in manifest.layers]
    return layers, ImageConfig.parse(layout.read_blob(manifest.config.digest))


async def test_pushed_over_v1_copied_to_v2_and_pulled_over_v2_keeps_diff_ids(tmp_path: Path) -> None:
    _, _, blobs, config_raw = build_layout(tmp_path / "src", layers=3)
    original = json.loads(config_raw)
    with run_serve(tmp_path / "old", enable_v2=False) as old, run_serve(tmp_path / "new", enable_v1=False) as new:
        async with Client() as client:
            await client.push(str(tmp_path / "src"), ref(old, "team/app:1.0"), protocol="v1")
            result = await client.copy(ref(old, "team/app:1.0"), ref(new, "team/app:1.0"))
            assert (result.source_protocol, result.target_protocol) == ("v1", "v2")
            assert result.blobs_copied == 4  # three layers and the config
            pull = await client.pull(ref(new, "team/app:1.0"), tmp_path / "out")
        assert pull.protocol == "v2"
        assert pull.digest == result.digest
    layers, config = pulled_image(tmp_path / "out")
    assert list(config.diff_ids) == original["rootfs"]["diff_ids"]
    assert layers == blobs
    assert config.config == original["config"]


async def test_v1_to_v2_on_one_registry_and_xz_layers_become_plain_tars(tmp_path: Path) -> None:
    _, _, _, config_raw = build_layout(tmp_path / "src", layers=2, kind="xz")
    with run_serve(tmp_path / "root") as server:
        async with Client() as client:
            await client.push(str(tmp_path / "src"), ref(server, "team/app:xz"), protocol="v1")
            await client.copy(
                ref(server, "team/app:xz"), ref(server, "team/app:xz"), source_protocol="v1", target_protocol="v2"
            )
            await client.pull(ref(server, "team/app:xz"), tmp_path / "out", protocol="v2")
    layers, config = pulled_image(tmp_path / "out")
    assert list(config.diff_ids) == json.loads(config_raw)["rootfs"]["diff_ids"]
    assert all(layer[257:262] == b"ustar" for layer in layers)


async def test_v2_to_v1_then_pull_over_v1(tmp_path: Path) -> None:
    layout, descriptor, blobs, config_raw = build_layout(tmp_path / "src", layers=3)
    with run_serve(tmp_path / "new", enable_v1=False) as new, run_serve(tmp_path / "old", enable_v2=False) as old:
        push_v2_raw(new.url, layout, descriptor, "team/app", "2.0")
        async with Client() as client:
            result = await client.copy(ref(new, "team/app:2.0"), ref(old, "legacy:2.0"))
            assert (result.source_protocol, result.target_protocol) == ("v2", "v1")
            assert result.blobs_copied == 3
            again = await client.copy(ref(new, "team/app:2.0"), ref(old, "legacy:2.0"))
            assert (again.blobs_copied, again.blobs_skipped) == (0, 3)
            assert again.image_id == result.image_id
            await client.pull(ref(old, "legacy:2.0"), tmp_path / "out")
        tags = httpx.get(f"{old.url}/v1/repositories/library/legacy/tags").json()
    assert tags == {"2.0": result.image_id}
    layers, config = pulled_image(tmp_path / "out")
    assert layers == blobs
    assert list(config.diff_ids) == json.loads(config_raw)["rootfs"]["diff_ids"]


async def test_v2_to_v2_keeps_the_manifest_digest(tmp_path: Path) -> None:
    layout, descriptor, _, _ = build_layout(tmp_path / "src", layers=2)
    with run_serve(tmp_path / "a") as a, run_serve(tmp_path / "b") as b:
        push_v2_raw(a.url, layout, descriptor, "team/app", "1")
        async with Client() as client:
            result = await client.copy(ref(a, "team/app:1"), ref(b, "mirror/app:1"))
            again = await client.copy(ref(a, "team/app:1"), ref(b, "mirror/app:1"))
    assert result.digest == descriptor.digest
    assert (result.blobs_copied, again.blobs_copied, again.blobs_skipped) == (3, 0, 3)


async def test_v1_to_v1_keeps_real_ids(tmp_path: Path) -> None:
    build_layout(tmp_path / "src", layers=2)
    with run_serve(tmp_path / "a", enable_v2=False) as a, run_serve(tmp_path / "b", enable_v2=False) as b:
        async with Client() as client:
            await client.push(str(tmp_path / "src"), ref(a, "team/app:1"), protocol="v1")
            result = await client.copy(ref(a, "team/app:1"), ref(b, "team/copy:1"))
        source_id = httpx.get(f"{a.url}/v1/repositories/team/app/tags/1").json()
        target_id = httpx.get(f"{b.url}/v1/repositories/team/copy/tags/1").json()
        ancestry = httpx.get(f"{a.url}/v1/images/{source_id}/ancestry").json()
        assert httpx.get(f"{b.url}/v1/images/{source_id}/ancestry").json() == ancestry
    assert source_id == target_id == result.image_id


async def test_corrupt_v2_blob_never_completes_the_v1_image(tmp_path: Path) -> None:
    layout, descriptor, _, _ = build_layout(tmp_path / "src", layers=1, size=8192)
    with run_serve(tmp_path / "new", enable_v1=False) as new, run_serve(tmp_path / "old", enable_v2=False) as old:
        push_v2_raw(new.url, layout, descriptor, "team/app", "1")
        manifest = layout.manifest(descriptor)
        layer = manifest.layers[0].digest
        data = tmp_path / "new" / "blobs" / "sha256" / layer.encoded[:2] / layer.encoded / "data"
        corrupted = bytearray(data.read_bytes())
        corrupted[100] ^= 0xFF
        data.write_bytes(bytes(corrupted))
        async with Client() as client:
            with pytest.raises(IntegrityError, match=str(layer)):
                await client.copy(ref(new, "team/app:1"), ref(old, "team/app:1"))
        assert httpx.get(f"{old.url}/v1/repositories/team/app/tags/1").status_code == 404
    assert not list((tmp_path / "old" / "blobs").glob("sha256/*/*/data"))


@pytest.mark.interop
async def test_v1_to_distribution_then_skopeo_reads_it(tmp_path: Path) -> None:
    from tests.conftest import require_binary
    from tests.support.distribution import run_distribution

    skopeo = require_binary("skopeo")
    binary = require_binary("docker-registry")
    _, _, blobs, config_raw = build_layout(tmp_path / "src", layers=3)
    with (
        run_serve(tmp_path / "old", enable_v2=False) as old,
        run_distribution(tmp_path / "dist", binary=binary) as dist,
    ):
        async with Client() as client:
            await client.push(str(tmp_path / "src"), ref(old, "team/app:1.0"), protocol="v1")
            await client.copy(ref(old, "team/app:1.0"), Reference.parse(f"{dist.host}/team/app:1.0"))
        done = await anyio.run_process(
            [skopeo, "copy", "--src-tls-verify=false", f"docker://{dist.host}/team/app:1.0", f"oci:{tmp_path / 'out'}"],
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
    layers, config = pulled_image(tmp_path / "out")
    assert layers == blobs
    assert list(config.diff_ids) == json.loads(config_raw)["rootfs"]["diff_ids"]


@pytest.mark.interop
async def test_skopeo_pushed_image_copied_from_distribution_to_v1(tmp_path: Path) -> None:
    from tests.conftest import require_binary
    from tests.support.distribution import run_distribution

    skopeo = require_binary("skopeo")
    binary = require_binary("docker-registry")
    _, _, blobs, config_raw = build_layout(tmp_path / "src", layers=2)
    with (
        run_distribution(tmp_path / "dist", binary=binary) as dist,
        run_serve(tmp_path / "old", enable_v2=False) as old,
    ):
        done = await anyio.run_process(
            [
                skopeo,
                "copy",
                "--dest-tls-verify=false",
                f"oci:{tmp_path / 'src'}:latest",
                f"docker://{dist.host}/s/app:1",
            ],
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        async with Client() as client:
            result = await client.copy(Reference.parse(f"{dist.host}/s/app:1"), ref(old, "s/app:1"))
            assert result.target_protocol == "v1"
            await client.pull(ref(old, "s/app:1"), tmp_path / "out")
    layers, config = pulled_image(tmp_path / "out")
    assert layers == blobs
    assert list(config.diff_ids) == json.loads(config_raw)["rootfs"]["diff_ids"]


async def test_corrupt_v2_blob_is_not_stored_at_a_v2_target(tmp_path: Path) -> None:
    layout, descriptor, _, _ = build_layout(tmp_path / "src", layers=1, size=8192)
    with run_serve(tmp_path / "a") as a, run_serve(tmp_path / "b") as b:
        push_v2_raw(a.url, layout, descriptor, "team/app", "1")
        layer = layout.manifest(descriptor).layers[0].digest
        data = tmp_path / "a" / "blobs" / "sha256" / layer.encoded[:2] / layer.encoded / "data"
        corrupted = bytearray(data.read_bytes())
        corrupted[-3] ^= 0xFF
        data.write_bytes(bytes(corrupted))
        async with Client() as client:
            with pytest.raises(IntegrityError, match=str(layer)):
                await client.copy(ref(a, "team/app:1"), ref(b, "team/app:1"))
        assert httpx.head(f"{b.url}/v2/team/app/blobs/{layer}").status_code == 404
        assert httpx.get(f"{b.url}/v2/team/app/manifests/1").status_code == 404
    assert not (tmp_path / "b" / "blobs" / "sha256" / layer.encoded[:2] / layer.encoded).exists()
    assert not list((tmp_path / "b").glob("uploads/*"))


async def test_v2_to_v2_copies_an_index_with_every_platform(tmp_path: Path) -> None:
    images = []
    for arch, seed in (("amd64", 1), ("arm64", 2)):
        layout, descriptor, _, _ = build_layout(tmp_path / arch, layers=1, seed=seed)
        images.append((arch, layout, descriptor))
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [{**d.to_json(), "platform": {"os": "linux", "architecture": arch}} for arch, _, d in images],
        }
    ).encode()
    with run_serve(tmp_path / "a") as a, run_serve(tmp_path / "b") as b:
        for _, layout, descriptor in images:
            push_v2_raw(a.url, layout, descriptor, "team/multi", str(descriptor.digest))
        put = httpx.put(f"{a.url}/v2/team/multi/manifests/1", content=index, headers={"Content-Type": mt.OCI_INDEX})
        assert put.status_code == 201
        async with Client() as client:
            result = await client.copy(ref(a, "team/multi:1"), ref(b, "team/multi:1"))
        copied = httpx.get(f"{b.url}/v2/team/multi/manifests/1", headers={"Accept": mt.OCI_INDEX})
        assert copied.content == index
        for _, _, descriptor in images:
            child = httpx.get(
                f"{b.url}/v2/team/multi/manifests/{descriptor.digest}", headers={"Accept": mt.OCI_MANIFEST}
            )
            assert child.status_code == 200
    assert result.blobs_copied == 4  # a config and a layer per platform
