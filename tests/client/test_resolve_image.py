"""One resolution of a reference to a platform's image, shared by pull, copy, inspect and the v1 push.

Against a real regtool serve: the same index resolves to the same image for every job, an index nested under a
platform's entry is followed down to the image, and a platform the index lacks fails with the same error
everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regtool import mediatypes as mt
from regtool.client import Client
from regtool.client.v1.push import image_manifest
from regtool.errors import NotFoundError
from regtool.image.oci_layout import OciLayout
from regtool.image.source import open_source
from regtool.manifest import Manifest, Platform, parse_manifest
from regtool.platform import host_platform, parse_platform
from regtool.reference import Reference
from tests.support.images import write_index
from tests.support.serve import RunningServe, serve  # noqa: F401

pytestmark = pytest.mark.anyio


def _index_under_platform(layout: OciLayout, inner: Manifest, platform: Platform, tag: str) -> Manifest:
    """An index whose one entry, for ``platform``, is the index ``inner``."""
    entry = inner.descriptor(platform=platform).to_json()
    raw = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}).encode()
    outer = parse_manifest(raw, mt.OCI_INDEX)
    layout.blobs.put_bytes(outer.digest, raw)
    layout.add_manifest(outer.descriptor(), ref_name=tag)
    return outer


async def test_a_nested_index_is_followed_to_the_platforms_image_by_pull_copy_and_inspect(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    inner = write_index(src, None, [("linux", "amd64"), ("linux", "arm64")])
    arm64 = inner.children[1]
    outer = _index_under_platform(OciLayout.open(src), inner.manifest, parse_platform("linux/arm64"), "nested")
    ref = Reference.parse(f"{serve.host}/team/nested:1")
    copied = Reference.parse(f"{serve.host}/team/copied:arm64")
    wanted = parse_platform("linux/arm64")
    async with Client() as client:
        await client.push(f"{src}:nested", ref)
        pulled = await client.pull(ref, tmp_path / "pulled", platform=wanted)
        inspected = await client.inspect(ref, platform=wanted)
        copy = await client.copy(ref, copied, platform=wanted)

    assert pulled.digest == arm64.manifest.digest
    assert pulled.platforms == ("linux/arm64",)
    assert (inspected.digest, inspected.manifest_digest) == (outer.digest, arm64.manifest.digest)
    assert inspected.platform == "linux/arm64"
    assert copy.digest == arm64.manifest.digest
    pulled_layout = OciLayout.open(tmp_path / "pulled")
    for digest, data in arm64.blobs.items():
        assert pulled_layout.read_blob(digest) == data
    # The v1 push's choice of a local index's image is the same resolution (this machine's platform).
    with open_source(f"{src}:nested") as source:
        if host_platform().architecture == "arm64":
            assert (await image_manifest(source)).digest == arm64.manifest.digest
        else:
            with pytest.raises(NotFoundError, match=r"has no manifest for platform"):
                await image_manifest(source)


async def test_an_index_named_without_a_platform_is_looked_into(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    # An index of indexes whose entries carry no platform, as containerd reads one: the platform's image is
    # found inside (it was "no manifest for platform ...; available: none", exit 3).
    src = tmp_path / "src"
    inner = write_index(src, None, [("linux", "amd64"), ("linux", "arm64")])
    entry = inner.manifest.descriptor().to_json()
    raw = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}).encode()
    outer = parse_manifest(raw, mt.OCI_INDEX)
    layout = OciLayout.open(src)
    layout.blobs.put_bytes(outer.digest, raw)
    layout.add_manifest(outer.descriptor(), ref_name="outer")
    ref = Reference.parse(f"{serve.host}/team/outer:1")
    async with Client() as client:
        await client.push(f"{src}:outer", ref)
        for platform, child in (("linux/arm64", inner.children[1]), ("linux/amd64", inner.children[0])):
            pulled = await client.pull(ref, tmp_path / platform.replace("/", "-"), platform=parse_platform(platform))
            assert pulled.digest == child.manifest.digest
        with pytest.raises(NotFoundError, match="no manifest for platform linux/s390x"):
            await client.pull(ref, tmp_path / "s390x", platform=parse_platform("linux/s390x"))


async def test_a_platform_the_index_lacks_fails_alike_for_pull_copy_and_inspect(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    write_index(src, "multi", [("linux", "amd64"), ("linux", "arm64")])
    ref = Reference.parse(f"{serve.host}/team/multi:1")
    absent = parse_platform("linux/s390x")
    expected = rf"^index {ref} has no manifest for platform linux/s390x; available: linux/amd64, linux/arm64$"
    async with Client() as client:
        await client.push(f"{src}:multi", ref)
        with pytest.raises(NotFoundError, match=expected):
            await client.pull(ref, tmp_path / "out", platform=absent)
        with pytest.raises(NotFoundError, match=expected):
            await client.inspect(ref, platform=absent)
        with pytest.raises(NotFoundError, match=expected):
            await client.copy(ref, Reference.parse(f"{serve.host}/team/other:1"), platform=absent)
        # Without a platform asked for, inspect describes an index lacking this machine's platform alone.
        only_s390x = tmp_path / "s390x"
        write_index(only_s390x, "one", [("linux", "s390x")])
        lone = Reference.parse(f"{serve.host}/team/lone:1")
        await client.push(f"{only_s390x}:one", lone)
        described = await client.inspect(lone)
    assert not (tmp_path / "out").exists()
    assert (described.platforms, described.manifest_digest, described.layers) == (("linux/s390x",), None, ())
    assert not serve.requests.events("PUT", "/v2/team/other/")
