"""Interop with Debian's docker-registry (distribution 2.8.2) and skopeo 1.9.3."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from regtool.client import Client
from regtool.digest import Digest
from regtool.errors import NotFoundError
from regtool.reference import Reference
from tests.conftest import require_binary
from tests.support.distribution import Distribution, distribution  # noqa: F401
from tests.support.images import write_image, write_index

pytestmark = [pytest.mark.anyio, pytest.mark.interop]


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    skopeo = require_binary("skopeo")
    return subprocess.run([skopeo, *args], capture_output=True, text=True, check=True, timeout=60)


def _blob(layout: Path, digest: Digest) -> bytes:
    return (layout / "blobs" / digest.algorithm / digest.encoded).read_bytes()


async def test_probe_distribution(distribution: Distribution) -> None:  # noqa: F811
    async with Client() as client:
        result = await client.probe(distribution.host)
    assert result.verdict == "v2" and result.scheme == "http"
    assert result.v2.api_version == "registry/2.0" and result.v2.status == 200
    assert result.v1.found is False and result.v1.status == 404
    assert result.evidence[0].url.startswith("https://") and result.evidence[0].error


async def test_regtool_pulls_what_skopeo_pushed(distribution: Distribution, tmp_path: Path) -> None:  # noqa: F811
    index = write_index(tmp_path / "src", "multi", [("linux", "amd64"), ("linux", "arm64")])
    target = f"{distribution.host}/skopeo/multi:1"
    _skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:multi", f"docker://{target}")
    async with Client() as client:
        single = await client.pull(Reference.parse(target), tmp_path / "one")
        archive = await client.pull(Reference.parse(target), tmp_path / "one.tar")
        everything = await client.pull(Reference.parse(target), tmp_path / "all", all_platforms=True)
        assert await client.tags(Reference.parse_repository(f"{distribution.host}/skopeo/multi")) == ["1"]
    amd64 = index.children[0]
    assert single.digest == amd64.manifest.digest
    assert everything.digest == index.manifest.digest
    for digest, data in amd64.blobs.items():
        assert _blob(tmp_path / "one", digest) == data
    inspected = json.loads(_skopeo("inspect", f"oci:{tmp_path / 'one'}:1").stdout)
    assert inspected["Digest"] == str(amd64.manifest.digest)
    assert inspected["Layers"] == [str(d) for d in amd64.layer_digests]
    from_archive = json.loads(_skopeo("inspect", f"docker-archive:{tmp_path / 'one.tar'}").stdout)
    assert from_archive["Architecture"] == "amd64"
    assert archive.digest == amd64.manifest.digest


async def test_skopeo_pulls_what_regtool_pushed(distribution: Distribution, tmp_path: Path) -> None:  # noqa: F811
    image = write_image(tmp_path / "src", "v1", [{"a": b"alpha" * 1000}, {"b": bytes(range(256)) * 64}])
    index = write_index(tmp_path / "idx", "multi")
    ref = Reference.parse(f"{distribution.host}/regtool/app:v1")
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:v1", ref, chunk_size=4096)
        await client.push(f"{tmp_path / 'idx'}:multi", Reference.parse(f"{distribution.host}/regtool/multi:m"))
    _skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / 'back'}:v1")
    _skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        f"docker://{distribution.host}/regtool/multi:m",
        f"oci:{tmp_path / 'mback'}:m",
    )
    assert _blob(tmp_path / "back", image.manifest.digest) == image.manifest.raw
    for digest, data in image.blobs.items():
        assert _blob(tmp_path / "back", digest) == data
    assert _blob(tmp_path / "mback", index.manifest.digest) == index.manifest.raw


async def test_delete_on_distribution(distribution: Distribution, tmp_path: Path) -> None:  # noqa: F811
    image = write_image(tmp_path / "src", "v", [{"a": b"1"}])
    ref = Reference.parse(f"{distribution.host}/regtool/del:v")
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:v", ref)
        assert await client.delete(ref) == image.manifest.digest
        with pytest.raises(NotFoundError) as caught:
            await client.manifest(ref)
    assert "MANIFEST_UNKNOWN" in str(caught.value)
