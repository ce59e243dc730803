"""A pull into a docker-archive against a real ``regtool serve``: layers decompressed while they download, the
archive byte for byte what ``write_docker_archive`` writes from a layout, a wrong diff_id refused with no file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

import pytest

from regtool import mediatypes as mt
from regtool.client import Client
from regtool.digest import Digest
from regtool.errors import IntegrityError
from regtool.image import docker_archive
from regtool.image.compression import open_decompressed
from regtool.image.docker_archive import write_docker_archive
from regtool.image.oci_layout import OciLayout
from regtool.manifest import parse_manifest
from regtool.reference import Reference
from tests.support.images import image_manifest, write_image, write_random_image
from tests.support.serve import RunningServe, serve  # noqa: F401

pytestmark = pytest.mark.anyio


class _Counting:
    """Counts the layers the archive writer decompresses itself (those the pull did not unpack on the way)."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = open_decompressed

    def __call__(self, stream: IO[bytes], *, what: str = "layer") -> Any:
        self.calls += 1
        return self._real(stream, what=what)


@pytest.mark.parametrize("gzip_layers", [True, False], ids=["gzip", "plain"])
async def test_an_archive_pull_unpacks_while_downloading_and_writes_the_same_bytes(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    gzip_layers: bool,
) -> None:
    manifest = write_random_image(tmp_path / "src", "1.0", count=3, size=3 << 20, gzip_layers=gzip_layers)
    ref = Reference.parse(f"{serve.host}/team/app:1.0")
    counting = _Counting()
    monkeypatch.setattr(docker_archive, "open_decompressed", counting)
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:1.0", ref)
        await client.pull(ref, tmp_path / "out")
        result = await client.pull(ref, tmp_path / "app.tar")
    assert result.format == "docker-archive" and result.blobs_downloaded == 4
    assert counting.calls == 0, "every layer was decompressed while it downloaded"
    layout = OciLayout.open(tmp_path / "out")
    assert manifest.config is not None
    config = layout.read_blob(manifest.config.digest)
    write_docker_archive(layout, manifest, config, [f"{serve.host}/team/app:1.0"], tmp_path / "reference.tar")
    assert counting.calls == 3
    assert (tmp_path / "app.tar").read_bytes() == (tmp_path / "reference.tar").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.tar", "out", "reference.tar", "registry", "src"]


@pytest.mark.parametrize("jobs", [1, 2, 8])
async def test_layers_arriving_in_any_order_make_the_same_archive(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    jobs: int,
) -> None:
    # Sizes out of the archive's order (the pull fetches the largest first), and one layer twice.
    sizes = [200_000, 3 << 20, 50_000, 1 << 20, 2 << 20]
    files = [{f"data{i}.bin": os.urandom(size)} for i, size in enumerate(sizes)]
    image = write_image(tmp_path / "src", "1.0", [*files, files[1]])
    ref = Reference.parse(f"{serve.host}/team/app:1.0")
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:1.0", ref)
    counting = _Counting()
    monkeypatch.setattr(docker_archive, "open_decompressed", counting)
    async with Client(jobs=jobs) as client:
        result = await client.pull(ref, tmp_path / "app.tar")
    assert result.blobs_downloaded == len(sizes) + 1
    assert counting.calls == 0, "every layer was decompressed while it downloaded"
    layout = OciLayout.open(tmp_path / "src")
    write_docker_archive(layout, image.manifest, image.config, [f"{serve.host}/team/app:1.0"], tmp_path / "ref.tar")
    assert (tmp_path / "app.tar").read_bytes() == (tmp_path / "ref.tar").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.tar", "ref.tar", "registry", "src"]


async def test_a_layer_that_does_not_match_its_diff_id_leaves_no_archive(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    image = image_manifest([{"etc/motd": b"hello"}, {"bin/app": b"\x7fELF" + bytes(5000)}])
    wrong = str(Digest.of(b"not the layer"))
    config_doc = json.loads(image.config)
    config_doc["rootfs"]["diff_ids"][1] = wrong
    config = json.dumps(config_doc).encode()
    doc = json.loads(image.manifest.raw)
    doc["config"].update(digest=str(Digest.of(config)), size=len(config))
    raw = json.dumps(doc).encode()
    layout = OciLayout.open(tmp_path / "src", create=True)
    for data in (config, *image.layers, raw):
        layout.blobs.put_bytes(None, data)
    layout.add_manifest(parse_manifest(raw, mt.OCI_MANIFEST).descriptor(), ref_name="1.0")
    ref = Reference.parse(f"{serve.host}/team/app:1.0")
    async with Client() as client:
        await client.push(f"{tmp_path / 'src'}:1.0", ref)
        with pytest.raises(IntegrityError) as caught:
            await client.pull(ref, tmp_path / "app.tar")
    assert str(caught.value) == (
        f"layer {image.layer_digests[1]}: uncompressed content hashes to {image.diff_ids[1]}, "
        f"but the config's diff_id is {wrong}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry", "src"]
