"""Round trips against a real ``regtool serve``: push a layout, pull it back (OCI and docker-archive), byte for byte."""

from __future__ import annotations

import json
import random
import tarfile
from pathlib import Path

import httpx
import pytest

from regtool.client import Client
from regtool.digest import Digest
from regtool.errors import IntegrityError, NotFoundError, UsageError
from regtool.image.oci_layout import OciLayout
from regtool.manifest import Platform
from regtool.reference import Reference
from tests.support.images import write_image, write_index
from tests.support.serve import RunningServe, serve  # noqa: F401

pytestmark = pytest.mark.anyio


def _blob(layout: Path, digest: Digest) -> bytes:
    return (layout / "blobs" / digest.algorithm / digest.encoded).read_bytes()


async def test_push_then_pull_oci_and_docker_archive(serve: RunningServe, tmp_path: Path) -> None:  # noqa: F811
    image = write_image(tmp_path / "src", "1.0", [{"etc/motd": b"hello"}, {"bin/app": b"\x7fELF" + bytes(5000)}])
    ref = Reference.parse(f"{serve.host}/team/app:1.0")
    async with Client() as client:
        pushed = await client.push(f"{tmp_path / 'src'}:1.0", ref)
        assert pushed.digest == image.manifest.digest
        assert (pushed.blobs_uploaded, pushed.blobs_skipped, pushed.bytes_uploaded) == (
            3,
            0,
            sum(len(b) for b in image.blobs.values()),
        )
        pulled = await client.pull(ref, tmp_path / "out")
        archive = await client.pull(ref, tmp_path / "app.tar")
    assert pulled.digest == image.manifest.digest and pulled.format == "oci" and pulled.protocol == "v2"
    assert pulled.blobs_downloaded == 3
    # A finished pull leaves only the layout's own files (no empty staging directory).
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["blobs", "index.json", "oci-layout"]
    layout = OciLayout.open(tmp_path / "out")
    (entry,) = layout.entries()
    assert entry.digest == image.manifest.digest
    assert entry.annotations["org.opencontainers.image.ref.name"] == "1.0"
    assert _blob(tmp_path / "out", image.manifest.digest) == image.manifest.raw
    for digest, data in image.blobs.items():
        assert _blob(tmp_path / "out", digest) == data
    assert archive.format == "docker-archive"
    with tarfile.open(tmp_path / "app.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == [f"{serve.host}/team/app:1.0"]
        assert tar.extractfile(manifest[0]["Config"]).read() == image.config  # type: ignore[union-attr]
        layers = [tar.extractfile(name).read() for name in manifest[0]["Layers"]]  # type: ignore[union-attr]
    assert [str(Digest.of(layer)) for layer in layers] == list(image.diff_ids)
    assert not list(tmp_path.glob(".app.tar*"))


async def test_second_push_skips_and_mount_from(serve: RunningServe, tmp_path: Path) -> None:  # noqa: F811
    write_image(tmp_path / "src", "v", [{"a": b"1"}, {"b": b"2"}])
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:v", Reference.parse(f"{serve.host}/a/one:v"))
        again = await client.push(f"{tmp_path / 'src'}:v", Reference.parse(f"{serve.host}/a/one:w"))
        mounted = await client.push(
            f"{tmp_path / 'src'}:v", Reference.parse(f"{serve.host}/b/two:v"), mount_from=["a/one"]
        )
        assert await client.tags(Reference.parse_repository(f"{serve.host}/a/one")) == ["v", "w"]
    assert (again.blobs_uploaded, again.blobs_skipped) == (0, 3)
    assert (mounted.blobs_uploaded, mounted.blobs_mounted) == (0, 3)
    posts = serve.requests.events("POST")
    assert sum("mount=" in e.query for e in posts) == 3


async def test_chunked_push(serve: RunningServe, tmp_path: Path) -> None:  # noqa: F811
    image = write_image(tmp_path / "src", "v", [{"big": bytes(range(256)) * 200}])
    ref = Reference.parse(f"{serve.host}/chunky/app:v")
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:v", ref, chunk_size=100)
        await client.pull(ref, tmp_path / "out")
    layer = image.manifest.layers[0]
    patches = serve.requests.events("PATCH")
    assert len(patches) >= layer.size // 100
    assert _blob(tmp_path / "out", layer.digest) == image.blobs[layer.digest]


async def test_push_chunks_blobs_above_the_default_threshold(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The default is 256 MiB; shrink it so the default path is exercised with small blobs.
    monkeypatch.setattr("regtool.client.v2.push.DEFAULT_CHUNK_SIZE", 1000)
    image = write_image(tmp_path / "src", "v", [{"small": b"x" * 10}, {"big": random.Random(0).randbytes(5000)}])
    ref = Reference.parse(f"{serve.host}/chunky/default:v")
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:v", ref)
        await client.pull(ref, tmp_path / "out")
    big = max(image.manifest.layers, key=lambda layer: layer.size)
    assert big.size > 1000
    patches = serve.requests.events("PATCH")
    assert len(patches) == -(-big.size // 1000)  # only the blob above the threshold went up in chunks
    assert _blob(tmp_path / "out", big.digest) == image.blobs[big.digest]


async def test_push_mounts_from_the_repository_the_layout_was_pulled_from(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    write_image(tmp_path / "src", "v", [{"a": b"1"}, {"b": b"2"}])
    origin = Reference.parse(f"{serve.host}/team/origin:v")
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:v", origin)
        await client.pull(origin, tmp_path / "pulled")
        serve.requests.clear()
        same_registry = await client.push(f"{tmp_path / 'pulled'}:v", Reference.parse(f"{serve.host}/team/copy:v"))
        # The origin repository no longer has the blobs: the registry answers the mount with 202 and an upload.
        for layer in (await client.manifest(origin)).layers:
            assert httpx.delete(f"{serve.url}/v2/team/origin/blobs/{layer.digest}").status_code == 202
        uploaded = await client.push(f"{tmp_path / 'pulled'}:v", Reference.parse(f"{serve.host}/team/third:v"))
    assert (same_registry.blobs_mounted, same_registry.blobs_uploaded) == (3, 0)
    mounts = [e for e in serve.requests.events("POST") if "mount=" in e.query]
    assert mounts and all("from=team%2Forigin" in e.query for e in mounts)
    assert uploaded.blobs_uploaded == 2 and uploaded.blobs_mounted == 1  # the config is still in team/origin


async def test_multi_arch_platform_selection_and_all_platforms(serve: RunningServe, tmp_path: Path) -> None:  # noqa: F811
    index = write_index(tmp_path / "src", "multi", [("linux", "amd64"), ("linux", "arm64")])
    ref = Reference.parse(f"{serve.host}/team/multi:1")
    async with Client() as client:
        pushed = await client.push(f"{tmp_path / 'src'}:multi", ref)
        assert pushed.digest == index.manifest.digest
        arm = await client.pull(ref, tmp_path / "arm", platform=Platform("arm64", "linux"))
        everything = await client.pull(ref, tmp_path / "all", all_platforms=True)
        with pytest.raises(NotFoundError, match="linux/s390x"):
            await client.pull(ref, tmp_path / "none", platform=Platform("s390x", "linux"))
    arm64 = index.children[1]
    assert arm.digest == arm64.manifest.digest and arm.platforms == ("linux/arm64",)
    assert {d.encoded for d in arm64.blobs} | {arm64.manifest.digest.encoded} == {
        p.name for p in (tmp_path / "arm" / "blobs" / "sha256").iterdir()
    }
    assert not (tmp_path / "arm" / "blobs" / "sha256" / index.children[0].config_digest.encoded).exists()
    assert everything.digest == index.manifest.digest and everything.platforms == ("linux/amd64", "linux/arm64")
    (entry,) = OciLayout.open(tmp_path / "all").entries()
    assert entry.digest == index.manifest.digest
    assert _blob(tmp_path / "all", index.manifest.digest) == index.manifest.raw
    for child in index.children:
        assert _blob(tmp_path / "all", child.manifest.digest) == child.manifest.raw
        for digest, data in child.blobs.items():
            assert _blob(tmp_path / "all", digest) == data


async def test_partial_layout_downloads_only_missing_blobs(serve: RunningServe, tmp_path: Path) -> None:  # noqa: F811
    image = write_image(tmp_path / "src", "v", [{"a": b"a" * 100}, {"b": b"b" * 100}, {"c": b"c" * 100}])
    ref = Reference.parse(f"{serve.host}/team/partial:v")
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:v", ref)
        dest = tmp_path / "out"
        layout = OciLayout.open(dest, create=True)
        have = image.manifest.layers[0].digest
        layout.blobs.put_bytes(have, image.blobs[have])
        serve.requests.clear()
        result = await client.pull(ref, dest)
    gets = [e.path for e in serve.requests.events("GET") if "/blobs/" in e.path]
    assert sorted(gets) == sorted(
        f"/v2/team/partial/blobs/{d}" for d in (image.config_digest, *image.layer_digests[1:])
    )
    assert (result.blobs_downloaded, result.blobs_skipped) == (3, 1)


async def test_pull_by_digest_and_several_tags_in_one_layout(serve: RunningServe, tmp_path: Path) -> None:  # noqa: F811
    one = write_image(tmp_path / "one", "v", [{"a": b"1"}])
    two = write_image(tmp_path / "two", "v", [{"a": b"2"}])
    async with Client() as client:
        await client.push(f"{tmp_path / 'one'}:v", Reference.parse(f"{serve.host}/t/app:one"))
        await client.push(f"{tmp_path / 'two'}:v", Reference.parse(f"{serve.host}/t/app:two"))
        await client.pull(Reference.parse(f"{serve.host}/t/app:one"), tmp_path / "out")
        await client.pull(Reference.parse(f"{serve.host}/t/app:two"), tmp_path / "out")
        by_digest = await client.pull(Reference.parse(f"{serve.host}/t/app@{one.manifest.digest}"), tmp_path / "d")
        manifest = await client.manifest(Reference.parse(f"{serve.host}/t/app:two"))
    names = OciLayout.open(tmp_path / "out").ref_names()
    assert names == ["one", "two"]
    assert by_digest.digest == one.manifest.digest
    assert manifest.raw == two.manifest.raw


async def test_inspect_tags_catalog_delete(serve: RunningServe, tmp_path: Path) -> None:  # noqa: F811
    image = write_image(tmp_path / "src", "v", [{"a": b"1"}], labels={"org.example": "yes"}, entrypoint=("/app",))
    ref = Reference.parse(f"{serve.host}/team/app:v")
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:v", ref)
        info = await client.inspect(ref)
        assert await client.catalog(serve.host) == ["team/app"]
        deleted = await client.delete(ref)
        with pytest.raises(NotFoundError):
            await client.manifest(ref)
    assert info.digest == image.manifest.digest and info.config_digest == image.config_digest
    assert info.entrypoint == ("/app",) and info.labels == {"org.example": "yes"} and info.os == "linux"
    assert [layer.digest for layer in info.layers] == list(image.layer_digests)
    assert info.to_json()["layers"][0]["size"] == image.manifest.layers[0].size
    assert deleted == image.manifest.digest


async def test_integrity_error_from_serve_leaves_nothing(serve: RunningServe, tmp_path: Path) -> None:  # noqa: F811
    image = write_image(tmp_path / "src", "v", [{"a": b"1" * 1000}])
    ref = Reference.parse(f"{serve.host}/team/app:v")
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:v", ref)
        # A layer whose stored bytes rotted on the registry's disk (same size, one byte flipped).
        (layer,) = image.layer_digests
        assert serve.root is not None
        stored = serve.root / "blobs" / "sha256" / layer.encoded[:2] / layer.encoded / "data"
        data = bytearray(stored.read_bytes())
        data[len(data) // 2] ^= 0xFF
        stored.write_bytes(bytes(data))
        with pytest.raises(IntegrityError) as caught:
            await client.pull(ref, tmp_path / "out")
        wrong = Reference.parse(f"{serve.host}/team/app@{Digest.of(b'not it')}")
        with pytest.raises(NotFoundError):
            await client.pull(wrong, tmp_path / "out")
    assert layer.encoded in str(caught.value) and serve.url in str(caught.value)
    assert not (tmp_path / "out" / "blobs" / "sha256" / layer.encoded).exists()
    # Nothing of the bad blob survives. (A sibling cancelled mid-download may keep its own verified-so-far
    # partial in the staging area: that is what a later run resumes, by design.)
    assert not list((tmp_path / "out").rglob(f"*{layer.encoded}*"))
    # The pull created "out": what it made (oci-layout, index.json, other blobs) is gone again.
    out = tmp_path / "out"
    assert not out.exists() or [p.name for p in out.iterdir()] == [".regtool-staging"]


async def test_docker_archive_into_a_directory_is_refused_before_any_transfer(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    write_image(tmp_path / "src", "v", [{"a": b"1" * 1000}])
    ref = Reference.parse(f"{serve.host}/team/app:v")
    (tmp_path / "dir").mkdir()
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:v", ref)
        with pytest.raises(UsageError, match="is a directory"):
            await client.pull(ref, tmp_path / "dir", format="docker-archive")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "registry", "src"]
    assert list((tmp_path / "dir").iterdir()) == []
