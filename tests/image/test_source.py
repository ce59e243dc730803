from __future__ import annotations

import json
from pathlib import Path

import pytest

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import ImageFormatError, NotFoundError, UsageError
from regtool.image.docker_archive import DockerArchiveSource, write_docker_archive
from regtool.image.source import ImageSource, OciLayoutSource, open_source, parse_source_spec
from regtool.manifest import Descriptor
from tests.image.builders import make_image, make_layout, store_image


@pytest.fixture
def lay(tmp_path: Path) -> Path:
    make_layout(tmp_path / "lay", make_image(), "1.0")
    return tmp_path / "lay"


@pytest.fixture
def archive(tmp_path: Path, lay: Path) -> Path:
    image = make_image()
    from regtool.image.oci_layout import OciLayout

    return write_docker_archive(OciLayout.open(lay), image.manifest, image.config, ["r:1"], tmp_path / "img.tar")


def test_spec_forms(tmp_path: Path, lay: Path, archive: Path) -> None:
    assert parse_source_spec(str(lay)) == ("oci", lay, None)
    assert parse_source_spec(f"{lay}:1.0") == ("oci", lay, "1.0")
    assert parse_source_spec(f"oci:{lay}:1.0") == ("oci", lay, "1.0")
    assert parse_source_spec(f"oci:{lay}") == ("oci", lay, None)
    assert parse_source_spec(str(archive)) == ("docker-archive", archive, None)
    assert parse_source_spec(f"docker-archive:{archive}:r:1") == ("docker-archive", archive, "r:1")
    colon = tmp_path / "a:b"
    colon.mkdir()
    assert parse_source_spec(f"{colon}:tag") == ("oci", colon, "tag")
    assert parse_source_spec(str(colon)) == ("oci", colon, None)


def test_spec_errors(tmp_path: Path, lay: Path, archive: Path) -> None:
    with pytest.raises(UsageError, match="no such file or directory"):
        parse_source_spec(str(tmp_path / "absent:tag"))
    with pytest.raises(ImageFormatError, match="must be a directory"):
        parse_source_spec(f"oci:{archive}")
    with pytest.raises(ImageFormatError, match="must be a tar file"):
        parse_source_spec(f"docker-archive:{lay}")


def test_oci_layout_source(lay: Path) -> None:
    image = make_image()
    with open_source(f"{lay}:1.0") as src:
        assert isinstance(src, OciLayoutSource)
        assert isinstance(src, ImageSource)
        assert src.root.raw == image.manifest.raw
        assert src.ref_name == "1.0"
        assert not src.recompressed
        assert src.description == f"oci:{lay}:1.0"
        assert src.manifest(image.manifest.digest) is src.root
        for blob, desc in zip(image.layers, image.manifest.layers, strict=True):
            assert src.blob_size(desc.digest) == len(blob)
            with src.open_blob(desc.digest) as f:
                assert f.read() == blob
            assert src.blob_path(desc.digest) == lay / "blobs" / "sha256" / desc.digest.encoded
        absent = Digest.of(b"absent")
        assert src.blob_path(absent) is None
        with pytest.raises(NotFoundError, match=f"blob {absent} not found in oci:"):
            src.blob_size(absent)
        with pytest.raises(NotFoundError):
            src.open_blob(absent)
        with pytest.raises(NotFoundError, match=f"manifest {absent}"):
            src.manifest(absent)
    # without a tag, the layout's only image; the tag comes from index.json
    with open_source(str(lay)) as src:
        assert src.ref_name == "1.0"
    with pytest.raises(NotFoundError, match=r"no image '2\.0'"):
        open_source(f"{lay}:2.0")


def test_index_source_gives_children(tmp_path: Path) -> None:
    amd, arm = make_image(architecture="amd64"), make_image(architecture="arm64")
    layout = make_layout(tmp_path / "multi", amd, None)
    store_image(layout, arm, None)
    children = [img.manifest.descriptor().to_json() for img in (amd, arm)]
    raw = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": children}).encode()
    digest = layout.blobs.put_bytes(None, raw)
    layout.add_manifest(Descriptor(mt.OCI_INDEX, digest, len(raw)), "all")
    with open_source(f"{tmp_path / 'multi'}:all") as src:
        assert src.root.is_index
        assert src.manifest(arm.manifest.digest).raw == arm.manifest.raw


def test_docker_archive_source(archive: Path) -> None:
    with open_source(str(archive)) as src:
        assert isinstance(src, DockerArchiveSource)
        assert isinstance(src, ImageSource)
        assert src.recompressed
        assert src.ref_name == "r:1"
        assert src.description == f"docker-archive:{archive}"
        assert src.manifest(src.root.digest) is src.root
        for layer in src.root.layers:
            path = src.blob_path(layer.digest)
            assert path is not None
            assert path.stat().st_size == layer.size
        tmp = src.store.root
    assert not tmp.exists()


def test_docker_archive_work_dir(tmp_path: Path, archive: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with open_source(f"docker-archive:{archive}", work_dir=work) as src:
        assert src.store.root.parent == work
    assert list(work.iterdir()) == []
