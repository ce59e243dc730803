"""Indexes of indexes (legal OCI): push, pull --all-platforms and copy take the whole tree, children first.

Against a real regtool serve, whose manifest PUT refuses an index whose children it does not hold
(MANIFEST_BLOB_UNKNOWN), so a push in the wrong order or a missing grandchild fails there.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from regtool.client import Client
from regtool.errors import ImageFormatError
from regtool.image.oci_layout import OciLayout
from regtool.manifest import MAX_INDEX_DEPTH, Manifest, parse_manifest
from regtool.reference import Reference
from tests.support.images import write_image, write_index
from tests.support.serve import RunningServe, serve  # noqa: F401

pytestmark = pytest.mark.anyio


def _index_over(layout: OciLayout, children: list[Manifest], tag: str | None) -> Manifest:
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [c.descriptor().to_json() for c in children]}
    ).encode()
    index = parse_manifest(raw, mt.OCI_INDEX)
    layout.blobs.put_bytes(index.digest, raw)
    layout.add_manifest(index.descriptor(), ref_name=tag)
    return index


def _blob_files(layout: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}


async def test_nested_index_push_pull_and_copy_keep_the_whole_tree(serve: RunningServe, tmp_path: Path) -> None:  # noqa: F811
    src = tmp_path / "src"
    inner = write_index(src, None, [("linux", "amd64"), ("linux", "arm64")])
    single = write_image(src, None, [{"s390x.txt": b"s390x"}], arch="s390x")
    layout = OciLayout.open(src)
    outer = _index_over(layout, [inner.manifest, single.manifest], "nested")
    expected = {d.encoded for c in inner.children for d in c.blobs}
    expected |= {d.encoded for d in single.blobs}
    expected |= {c.manifest.digest.encoded for c in inner.children}
    expected |= {inner.manifest.digest.encoded, single.manifest.digest.encoded, outer.digest.encoded}

    ref = Reference.parse(f"{serve.host}/team/nested:1")
    copied = Reference.parse(f"{serve.host}/team/copied:1")
    async with Client() as client:
        pushed = await client.push(f"{src}:nested", ref)
        pulled = await client.pull(ref, tmp_path / "all", all_platforms=True)
        await client.copy(ref, copied)
        copied_back = await client.pull(copied, tmp_path / "copied", all_platforms=True)

    assert pushed.digest == outer.digest
    assert pulled.digest == copied_back.digest == outer.digest
    source_blobs = _blob_files(src)
    for dest in (tmp_path / "all", tmp_path / "copied"):
        got = _blob_files(dest)
        assert set(got) == expected
        assert all(got[name] == source_blobs[name] for name in got)
    # The grandchildren reached the registry's second repository too, each under its digest.
    for child in inner.children:
        url = f"{serve.url}/v2/team/copied/manifests/{child.manifest.digest}"
        assert httpx.get(url, headers={"Accept": mt.OCI_MANIFEST}).content == child.manifest.raw


async def test_indexes_nested_too_deep_are_refused_before_any_upload(serve: RunningServe, tmp_path: Path) -> None:  # noqa: F811
    src = tmp_path / "src"
    image = write_image(src, None, [{"a.txt": b"a"}])
    layout = OciLayout.open(src)
    top: Manifest = image.manifest
    for level in range(MAX_INDEX_DEPTH + 1):
        top = _index_over(layout, [top], "deep" if level == MAX_INDEX_DEPTH else None)
    async with Client() as client:
        with pytest.raises(ImageFormatError, match=f"nest more than {MAX_INDEX_DEPTH} deep"):
            await client.push(f"{src}:deep", Reference.parse(f"{serve.host}/team/deep:1"))
    assert not serve.requests.events("PUT")
    assert not serve.requests.events("POST")
