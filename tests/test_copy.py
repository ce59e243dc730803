"""``Client.copy`` registry to registry, across protocols, against real ``regtool serve`` instances."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest

from regtool import mediatypes as mt
from regtool.client import Client
from regtool.digest import Digest
from regtool.errors import IntegrityError, NotFoundError, UsageError
from regtool.image.oci_layout import OciLayout
from regtool.manifest import ImageConfig, Manifest, Platform, parse_manifest
from regtool.reference import Reference
from tests.support.images import BuiltImage, image_manifest, write_random_image
from tests.support.serve import RunningServe, run_serve
from tests.v1.images import build_layout, push_v2_raw

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Upload sessions are remembered for a resume: in this test's directory, not the user's cache.
    monkeypatch.setenv("REGTOOL_STATE_DIR", str(tmp_path / "state"))


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


# -- one platform, digests, mounts, chunks -----------------------------------------------------------------------

PLATFORMS = (("linux", "amd64", None), ("linux", "arm", "v7"), ("linux", "arm64", None))


def write_multi_platform(path: Path, tag: str) -> tuple[Manifest, dict[str, BuiltImage]]:
    """An OCI layout with an index over one small image per PLATFORMS entry (arm/v7 with its variant)."""
    layout = OciLayout.open(path, create=True)
    children: dict[str, BuiltImage] = {}
    entries = []
    for os_name, arch, variant in PLATFORMS:
        child = image_manifest([{f"{arch}.txt": f"{arch} {variant}".encode()}], arch=arch, variant=variant)
        for digest, data in child.blobs.items():
            layout.blobs.put_bytes(digest, data)
        layout.blobs.put_bytes(child.manifest.digest, child.manifest.raw)
        entries.append(child.manifest.descriptor(platform=Platform(arch, os_name, variant)).to_json())
        children[str(child.platform)] = child
    raw = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}).encode()
    index = parse_manifest(raw, mt.OCI_INDEX)
    layout.blobs.put_bytes(index.digest, raw)
    layout.add_manifest(index.descriptor(), ref_name=tag)
    return index, children


async def test_copy_with_a_platform_copies_that_image_alone_tagged_at_the_target(tmp_path: Path) -> None:
    index, children = write_multi_platform(tmp_path / "src", "1.0")
    arm = children["linux/arm/v7"]
    with run_serve(tmp_path / "a") as a, run_serve(tmp_path / "b") as b:
        async with Client() as client:
            await client.push(f"{tmp_path / 'src'}:1.0", ref(a, "team/multi:1.0"))
            result = await client.copy(
                ref(a, "team/multi:1.0"), ref(b, "mirror/multi:1.0"), platform=Platform("arm", "linux", "v7")
            )
        assert result.digest == arm.manifest.digest
        assert result.blobs_copied == 2  # its config and its layer
        tagged = httpx.get(f"{b.url}/v2/mirror/multi/manifests/1.0", headers={"Accept": mt.MANIFEST_ACCEPT})
        assert tagged.content == arm.manifest.raw
        assert httpx.head(f"{b.url}/v2/mirror/multi/manifests/{index.digest}").status_code == 404
        for name, child in children.items():
            present = httpx.head(f"{b.url}/v2/mirror/multi/manifests/{child.manifest.digest}").status_code == 200
            assert present == (name == "linux/arm/v7")
            for digest in child.blobs:
                assert (httpx.head(f"{b.url}/v2/mirror/multi/blobs/{digest}").status_code == 200) == present


async def test_copy_of_a_platform_the_index_lacks_fails_as_pull_does_and_writes_nothing(tmp_path: Path) -> None:
    write_multi_platform(tmp_path / "src", "1.0")
    s390x = Platform("s390x", "linux")
    with run_serve(tmp_path / "a") as a, run_serve(tmp_path / "b") as b:
        async with Client() as client:
            await client.push(f"{tmp_path / 'src'}:1.0", ref(a, "team/multi:1.0"))
            with pytest.raises(NotFoundError) as pulled:
                await client.pull(ref(a, "team/multi:1.0"), tmp_path / "out", platform=s390x)
            b.requests.clear()
            with pytest.raises(NotFoundError) as copied:
                await client.copy(ref(a, "team/multi:1.0"), ref(b, "mirror/multi:1.0"), platform=s390x)
        assert str(copied.value) == str(pulled.value)
        assert "available: linux/amd64, linux/arm/v7, linux/arm64" in str(copied.value)
        assert [e.method for e in b.requests.events() if e.method not in {"GET", "HEAD"}] == []


async def test_a_target_digest_must_name_the_copied_manifest(tmp_path: Path) -> None:
    layout, descriptor, _, _ = build_layout(tmp_path / "src", layers=1)
    wrong = Digest("sha256", "0" * 64)
    with run_serve(tmp_path / "a") as a, run_serve(tmp_path / "b") as b:
        push_v2_raw(a.url, layout, descriptor, "team/app", "1")
        async with Client() as client:
            b.requests.clear()
            with pytest.raises(UsageError, match=f"the source's manifest is {descriptor.digest}, not the digest"):
                await client.copy(ref(a, "team/app:1"), ref(b, f"mirror/app@{wrong}"))
            assert [e.method for e in b.requests.events() if e.method not in {"GET", "HEAD"}] == []
            # The right digest is taken; with a tag too, the tag is what points at it.
            result = await client.copy(ref(a, "team/app:1"), ref(b, f"mirror/app:1@{descriptor.digest}"))
        assert result.digest == descriptor.digest
        tagged = httpx.get(f"{b.url}/v2/mirror/app/manifests/1", headers={"Accept": mt.MANIFEST_ACCEPT})
        assert Digest.of(tagged.content) == descriptor.digest


async def test_copy_within_one_registry_mounts_every_blob(tmp_path: Path) -> None:
    layout, descriptor, _, _ = build_layout(tmp_path / "src", layers=2)
    with run_serve(tmp_path / "a") as a:
        push_v2_raw(a.url, layout, descriptor, "team/app", "1")
        a.requests.clear()
        async with Client() as client:
            result = await client.copy(ref(a, "team/app:1"), ref(a, "other/app:1"))
        uploads = [e for e in a.requests.events() if "/blobs/uploads/" in e.path]
        assert [(e.method, e.status) for e in uploads] == [("POST", 201)] * 3
        assert all("mount=sha256%3A" in e.query or "mount=sha256:" in e.query for e in uploads)
        assert all("from=team%2Fapp" in e.query or "from=team/app" in e.query for e in uploads)
        assert (
            httpx.head(f"{a.url}/v2/other/app/manifests/1", headers={"Accept": mt.MANIFEST_ACCEPT}).status_code == 200
        )
    assert (result.blobs_mounted, result.blobs_copied, result.bytes_copied) == (3, 0, 0)


async def test_mount_from_another_repository_of_the_target_and_fallback_to_an_upload(tmp_path: Path) -> None:
    layout, descriptor, _, _ = build_layout(tmp_path / "src", layers=2)
    with run_serve(tmp_path / "a") as a, run_serve(tmp_path / "b") as b:
        push_v2_raw(a.url, layout, descriptor, "team/app", "1")
        push_v2_raw(b.url, layout, descriptor, "cache/app", "1")
        async with Client() as client:
            mounted = await client.copy(ref(a, "team/app:1"), ref(b, "mirror/app:1"), mount_from=["cache/app"])
            # A repository without the blobs answers the mount with an upload session (202): it is used.
            uploaded = await client.copy(ref(a, "team/app:1"), ref(b, "fresh/app:1"), mount_from=["empty/repo"])
    assert (mounted.blobs_mounted, mounted.blobs_copied) == (3, 0)
    assert (uploaded.blobs_mounted, uploaded.blobs_copied) == (0, 3)


async def test_chunk_size_uploads_large_blobs_in_patch_chunks(tmp_path: Path) -> None:
    manifest = write_random_image(tmp_path / "src", "1.0", count=1, size=2 << 20)
    layer = manifest.layers[0]
    with run_serve(tmp_path / "a") as a, run_serve(tmp_path / "b") as b:
        async with Client() as client:
            await client.push(f"{tmp_path / 'src'}:1.0", ref(a, "team/app:1.0"))
            b.requests.clear()
            await client.copy(ref(a, "team/app:1.0"), ref(b, "mirror/app:1.0"), chunk_size=512 << 10)
        patches = [e.received for e in b.requests.events() if e.method == "PATCH"]
        assert patches == [512 << 10] * (layer.size // (512 << 10)) + (
            [layer.size % (512 << 10)] * bool(layer.size % (512 << 10))
        )
        assert (
            httpx.get(f"{b.url}/v2/mirror/app/blobs/{layer.digest}").content
            == (tmp_path / "src" / "blobs" / "sha256" / layer.digest.encoded).read_bytes()
        )


async def test_the_targets_chunk_min_length_raises_the_chunk_size(tmp_path: Path) -> None:
    """regtool serve names no OCI-Chunk-Min-Length: a scripted target that does (and takes chunks of it)."""
    from tests.client.fakeregistry import V2_HEADER, Reply, fake_registry

    manifest = write_random_image(tmp_path / "src", "1.0", count=1, size=1 << 20)
    layer = manifest.layers[0]
    minimum = 400_000
    patches: dict[str, list[int]] = {}
    data: dict[str, bytearray] = {}
    stored: dict[str, bytes] = {}
    sessions = iter(range(100))
    with run_serve(tmp_path / "a") as a, fake_registry() as target:

        def post(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
            name = f"s{next(sessions)}"
            for verb in ("PATCH", "PUT"):
                target.route(verb, f"/v2/m/app/blobs/uploads/{name}", session)
            location = f"/v2/m/app/blobs/uploads/{name}"
            return Reply(202, {"Location": location, "OCI-Chunk-Min-Length": str(minimum)})

        def session(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
            name = path.partition("?")[0].rpartition("/")[2]
            if method == "PATCH":
                patches.setdefault(name, []).append(len(body))
                held = data.setdefault(name, bytearray())
                held.extend(body)
                return Reply(202, {"Location": f"/v2/m/app/blobs/uploads/{name}", "Range": f"0-{len(held) - 1}"})
            digest = path.partition("digest=")[2].replace("%3A", ":")
            stored[digest] = bytes(data.pop(name, b"")) + body
            return Reply(201, {"Docker-Content-Digest": digest})

        target.route("GET", "/v2/", Reply(200, dict(V2_HEADER), b"{}"))
        target.route("POST", "/v2/m/app/blobs/uploads/", post)
        target.route("PUT", "/v2/m/app/manifests/1.0", Reply(201, {"Docker-Content-Digest": str(manifest.digest)}))
        async with Client(jobs=1) as client:
            await client.push(f"{tmp_path / 'src'}:1.0", ref(a, "team/app:1.0"))
            await client.copy(ref(a, "team/app:1.0"), Reference.parse(f"{target.host}/m/app:1.0"), chunk_size=64 << 10)
    (chunks,) = [sizes for sizes in patches.values() if sum(sizes) == layer.size]
    assert chunks[:-1] == [minimum] * (len(chunks) - 1) and len(chunks) == -(-layer.size // minimum)
    assert stored[str(layer.digest)] == (tmp_path / "src" / "blobs" / "sha256" / layer.digest.encoded).read_bytes()
