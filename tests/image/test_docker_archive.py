from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import ImageFormatError, IntegrityError, NotFoundError
from regtool.image.docker_archive import read_docker_archive, synthetic_v1_ids, write_docker_archive
from regtool.image.oci_layout import OciLayout
from regtool.manifest import ImageConfig, parse_manifest
from tests.conftest import require_binary
from tests.image.builders import BuiltImage, gzip_bytes, make_image, make_layout, sha256


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        out = {}
        for m in tar.getmembers():
            f = tar.extractfile(m)
            out[m.name] = f.read() if f is not None else b""
        return out


def write(tmp_path: Path, image: BuiltImage, name: str = "img.tar", **kwargs: object) -> Path:
    layout = make_layout(tmp_path / f"lay-{name}", image)
    return write_docker_archive(
        layout,
        image.manifest,
        image.config,
        ["example.com/test:1.0"],
        tmp_path / name,
        **kwargs,  # type: ignore[arg-type]
    )


def test_archive_contents(tmp_path: Path) -> None:
    image = make_image(3)
    out = write(tmp_path, image)
    files = members(out)
    ids = synthetic_v1_ids(ImageConfig.parse(image.config).diff_ids)
    config_name = f"{image.manifest.config.digest.encoded}.json"  # type: ignore[union-attr]
    assert json.loads(files["manifest.json"]) == [
        {"Config": config_name, "RepoTags": ["example.com/test:1.0"], "Layers": [f"{i}/layer.tar" for i in ids]}
    ]
    assert files[config_name] == image.config
    assert json.loads(files["repositories"]) == {"example.com/test": {"1.0": ids[-1]}}
    for i, v1id in enumerate(ids):
        assert files[f"{v1id}/VERSION"] == b"1.0"
        assert files[f"{v1id}/layer.tar"] == image.tars[i]  # uncompressed
        legacy = json.loads(files[f"{v1id}/json"])
        assert legacy["id"] == v1id
        assert legacy.get("parent") == (ids[i - 1] if i else None)
    assert json.loads(files[f"{ids[-1]}/json"])["config"]["Cmd"] == ["/bin/sh"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_synthetic_ids_chain() -> None:
    a, b = sha256(b"a"), sha256(b"b")
    first = hashlib.sha256(f"\n{a}".encode()).hexdigest()
    assert synthetic_v1_ids([a, b]) == [first, hashlib.sha256(f"{first}\n{b}".encode()).hexdigest()]


@pytest.mark.parametrize("compress", ["gzip", "xz", "none"])
def test_round_trip_keeps_config_and_diff_ids(tmp_path: Path, compress: str) -> None:
    image = make_image(2, compress=compress)
    out = write(tmp_path, image)
    with read_docker_archive(out) as src:
        assert src.recompressed
        assert src.ref_name == "example.com/test:1.0"
        assert src.repo_tags == ("example.com/test:1.0",)
        assert src.root.media_type == mt.DOCKER_MANIFEST_V2
        assert src.root.config is not None
        assert src.root.config.digest == image.manifest.config.digest  # type: ignore[union-attr]
        with src.open_blob(src.root.config.digest) as f:
            config = ImageConfig.parse(f.read())
        assert config.diff_ids == tuple(sha256(t) for t in image.tars)
        for layer, tar in zip(src.root.layers, image.tars, strict=True):
            assert layer.media_type == mt.DOCKER_LAYER
            assert src.blob_size(layer.digest) == layer.size
            with src.open_blob(layer.digest) as f:
                assert gzip.decompress(f.read()) == tar
        tmp_dir = src.store.root
        assert tmp_dir.is_dir()
    assert not tmp_dir.exists()


def test_writing_and_reading_are_deterministic(tmp_path: Path) -> None:
    image = make_image(2)
    a, b = write(tmp_path, image, "a.tar"), write(tmp_path, image, "b.tar")
    assert a.read_bytes() == b.read_bytes()
    with read_docker_archive(a) as one, read_docker_archive(b) as two:
        assert one.root.raw == two.root.raw
        assert [d.digest for d in one.root.layers] == [d.digest for d in two.root.layers]


@dataclass(frozen=True)
class FakeV1:
    id: str
    json: bytes


def test_v1_chain_keeps_ids_and_json(tmp_path: Path) -> None:
    image = make_image(2)
    chain = [
        FakeV1("a" * 64, b'{"id":"' + b"a" * 64 + b'","created":"2014-01-01T00:00:00Z"}'),
        FakeV1("b" * 64, b'{"id":"' + b"b" * 64 + b'","parent":"' + b"a" * 64 + b'"}'),
    ]
    out = write(tmp_path, image, v1_chain=chain)
    files = members(out)
    assert json.loads(files["manifest.json"])[0]["Layers"] == ["a" * 64 + "/layer.tar", "b" * 64 + "/layer.tar"]
    assert files["a" * 64 + "/json"] == chain[0].json
    assert files["b" * 64 + "/json"] == chain[1].json
    assert json.loads(files["repositories"]) == {"example.com/test": {"1.0": "b" * 64}}
    with pytest.raises(ImageFormatError, match="v1 chain of 1 images for 2 layers"):
        write(tmp_path, image, "c.tar", v1_chain=chain[:1])


def test_diff_id_mismatch_leaves_no_file(tmp_path: Path) -> None:
    image = make_image(2)
    config = json.loads(image.config)
    config["rootfs"]["diff_ids"][1] = sha256(b"something else")
    bad_config = json.dumps(config).encode()
    doc = json.loads(image.manifest.raw)
    doc["config"].update(digest=sha256(bad_config), size=len(bad_config))
    manifest = parse_manifest(json.dumps(doc).encode())
    layout = make_layout(tmp_path / "lay", image)
    with pytest.raises(IntegrityError, match=f"layer {image.manifest.layers[1].digest}: uncompressed content"):
        write_docker_archive(layout, manifest, bad_config, [], tmp_path / "out.tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lay"]


def test_config_mismatch_and_missing_layer(tmp_path: Path) -> None:
    image = make_image(2)
    layout = make_layout(tmp_path / "lay", image)
    with pytest.raises(IntegrityError, match=r"config sha256:.*digest mismatch"):
        write_docker_archive(layout, image.manifest, image.config + b" ", [], tmp_path / "out.tar")
    layout.blobs.remove(image.manifest.layers[0].digest)
    with pytest.raises(NotFoundError, match=f"layer {image.manifest.layers[0].digest}"):
        write_docker_archive(layout.blobs, image.manifest, image.config, [], tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()


def test_existing_output_survives_a_failure(tmp_path: Path) -> None:
    image = make_image(1)
    out = write(tmp_path, image, "img.tar")
    before = out.read_bytes()
    layout = OciLayout.open(tmp_path / "lay-img.tar")
    with pytest.raises(IntegrityError):
        write_docker_archive(layout, image.manifest, b"{}", [], out)
    assert out.read_bytes() == before


def test_index_is_refused(tmp_path: Path) -> None:
    raw = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}).encode()
    with pytest.raises(ImageFormatError, match="not a index"):
        write_docker_archive(OciLayout.open(tmp_path, create=True), parse_manifest(raw), b"{}", [], tmp_path / "x")


def build_tar(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def test_reads_docker_style_symlinked_and_compressed_layers(tmp_path: Path) -> None:
    image = make_image(1)
    tar = image.tars[0]
    config = json.loads(image.config)
    config["rootfs"]["diff_ids"] = [sha256(tar), sha256(tar)]
    config_bytes = json.dumps(config).encode()
    manifest = [{"Config": "c.json", "RepoTags": None, "Layers": ["one/layer.tar", "two/layer.tar"]}]
    archive = build_tar(
        tmp_path / "a.tar",
        {"./manifest.json": json.dumps(manifest).encode(), "c.json": config_bytes, "one/layer.tar": gzip_bytes(tar)},
        {"two/layer.tar": "../one/layer.tar"},
    )
    with read_docker_archive(archive) as src:
        assert src.ref_name is None
        assert len(src.root.layers) == 2
        assert src.root.layers[0].digest == src.root.layers[1].digest


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no 'manifest.json'"),
        ({"manifest.json": b"nope"}, "manifest.json is not valid JSON"),
        ({"manifest.json": b"[]"}, "not a non-empty list"),
        ({"manifest.json": b'[{"Config": 1}]'}, "lacks Config or Layers"),
        ({"manifest.json": b'[{"Config": "c.json", "Layers": []}]'}, "no 'c.json'"),
        ({"manifest.json": b'[{"Config": "c.json", "Layers": ["l"]}]', "c.json": b"{}"}, "0 diff_ids for 1 layers"),
    ],
)
def test_bad_archives_are_named(tmp_path: Path, files: dict[str, bytes], message: str) -> None:
    archive = build_tar(tmp_path / "bad.tar", files)
    with pytest.raises(ImageFormatError, match=message) as info:
        read_docker_archive(archive, work_dir=tmp_path)
    assert str(archive) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar"]  # the temp store is gone


def test_not_a_tar(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"hello")
    with pytest.raises(ImageFormatError, match="not a readable tar"):
        read_docker_archive(tmp_path / "x.tar")


def test_layer_not_matching_its_diff_id(tmp_path: Path) -> None:
    image = make_image(1)
    manifest = [{"Config": "c.json", "Layers": ["l.tar"]}]
    archive = build_tar(
        tmp_path / "a.tar", {"manifest.json": json.dumps(manifest).encode(), "c.json": image.config, "l.tar": b"x"}
    )
    with pytest.raises(IntegrityError, match=r"layer l\.tar: content hashes to"):
        read_docker_archive(archive)


def test_picking_an_image_by_tag(tmp_path: Path) -> None:
    one, two = make_image(1, seed="one"), make_image(1, seed="two")
    files: dict[str, bytes] = {}
    entries = []
    for image, tag in ((one, "repo:one"), (two, "repo:two")):
        name = f"{Digest.of(image.config).encoded}.json"
        files[name] = image.config
        files[f"{tag[-3:]}/layer.tar"] = image.tars[0]
        entries.append({"Config": name, "RepoTags": [tag], "Layers": [f"{tag[-3:]}/layer.tar"]})
    files["manifest.json"] = json.dumps(entries).encode()
    archive = build_tar(tmp_path / "a.tar", files)
    with pytest.raises(ImageFormatError, match="holds 2 images; pick one of: repo:one, repo:two"):
        read_docker_archive(archive)
    for ref in ("repo:two", "two"):
        with read_docker_archive(archive, ref) as src:
            assert src.root.config is not None
            assert src.root.config.digest == Digest.of(two.config)
    with pytest.raises(NotFoundError, match="no image 'three'"):
        read_docker_archive(archive, "three")


def test_picking_an_image_as_docker_names_it_and_refusing_an_ambiguous_name(tmp_path: Path) -> None:
    # docker save writes short names: busybox:latest is docker.io/library/busybox:latest, team/app:1.0 is
    # docker.io/team/app:1.0; and two images may share a tag's suffix.
    images = {
        ("busybox:latest", "team/app:1.0"): make_image(1, seed="a"),
        ("other/app:1.0",): make_image(1, seed="b"),
    }
    files: dict[str, bytes] = {}
    entries = []
    for n, (tags, image) in enumerate(images.items()):
        name = f"{Digest.of(image.config).encoded}.json"
        files[name] = image.config
        files[f"l{n}/layer.tar"] = image.tars[0]
        entries.append({"Config": name, "RepoTags": list(tags), "Layers": [f"l{n}/layer.tar"]})
    files["manifest.json"] = json.dumps(entries).encode()
    archive = build_tar(tmp_path / "a.tar", files)
    first, second = (Digest.of(image.config) for image in images.values())
    for ref, config in (
        ("docker.io/library/busybox:latest", first),
        ("library/busybox", first),
        ("docker.io/team/app:1.0", first),
        ("other/app:1.0", second),
    ):
        with read_docker_archive(archive, ref) as src:
            assert src.root.config is not None and src.root.config.digest == config, ref
    for ambiguous in ("1.0", "app:1.0"):
        with pytest.raises(ImageFormatError, match=rf"'{ambiguous}' names 2 images"):
            read_docker_archive(archive, ambiguous)


@pytest.mark.interop
def test_skopeo_accepts_the_archive(tmp_path: Path) -> None:
    skopeo = require_binary("skopeo")
    image = make_image(3)
    out = write(tmp_path, image)
    info = json.loads(
        subprocess.run([skopeo, "inspect", f"docker-archive:{out}"], capture_output=True, check=True, timeout=60).stdout
    )
    assert info["Layers"] == [sha256(t) for t in image.tars]
    assert info["Labels"] == {"seed": "x"}
    # skopeo copy checks every diff_id while converting to an OCI layout
    subprocess.run(
        [skopeo, "copy", "-q", f"docker-archive:{out}", f"oci:{tmp_path / 'copy'}:x"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    layout = OciLayout.open(tmp_path / "copy")
    copied = layout.manifest(layout.resolve("x"))
    assert copied.config is not None
    # skopeo rewrites the config for OCI (media types), but the diff_ids it checked stay
    assert ImageConfig.parse(layout.read_blob(copied.config.digest)).diff_ids == tuple(sha256(t) for t in image.tars)


@pytest.mark.interop
def test_reads_an_archive_skopeo_wrote(tmp_path: Path) -> None:
    skopeo = require_binary("skopeo")
    image = make_image(2)
    make_layout(tmp_path / "lay", image, "1.0")
    archive = tmp_path / "sk.tar"
    subprocess.run(
        [skopeo, "copy", "-q", f"oci:{tmp_path / 'lay'}:1.0", f"docker-archive:{archive}:example.com/x:1.0"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    with read_docker_archive(archive) as src:
        assert src.repo_tags == ("example.com/x:1.0",)
        with src.open_blob(src.root.config.digest) as f:  # type: ignore[union-attr]
            assert ImageConfig.parse(f.read()).diff_ids == tuple(sha256(t) for t in image.tars)


def test_config_that_is_not_an_object(tmp_path: Path) -> None:
    manifest = [{"Config": "c.json", "Layers": []}]
    archive = build_tar(tmp_path / "a.tar", {"manifest.json": json.dumps(manifest).encode(), "c.json": b"[1]"})
    with pytest.raises(ImageFormatError, match=r"c\.json: image config not a JSON object"):
        read_docker_archive(archive)


def test_docker_25_style_layer_paths(tmp_path: Path) -> None:
    # docker >= 25 saves an OCI layout inside the tar, and manifest.json points into blobs/
    image = make_image(2)
    files = {f"blobs/sha256/{sha256(t)[7:]}": t for t in image.tars}
    files["blobs/sha256/" + Digest.of(image.config).encoded] = image.config
    entry = {
        "Config": "blobs/sha256/" + Digest.of(image.config).encoded,
        "RepoTags": ["x:1"],
        "Layers": [f"blobs/sha256/{sha256(t)[7:]}" for t in image.tars],
    }
    files["manifest.json"] = json.dumps([entry]).encode()
    with read_docker_archive(build_tar(tmp_path / "a.tar", files)) as src:
        assert src.repo_tags == ("x:1",)
        assert len(src.root.layers) == 2


def test_corrupt_layer_leaves_no_file(tmp_path: Path) -> None:
    image = make_image(1)
    broken = image.layers[0][:-12]
    doc = json.loads(image.manifest.raw)
    doc["layers"][0].update(digest=sha256(broken), size=len(broken))
    manifest = parse_manifest(json.dumps(doc).encode())
    layout = OciLayout.open(tmp_path / "lay", create=True)
    layout.blobs.put_bytes(None, broken)
    with pytest.raises(ImageFormatError, match=f"layer {sha256(broken)}: corrupt gzip data"):
        write_docker_archive(layout, manifest, image.config, [], tmp_path / "out.tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lay"]


def test_v1_ids_must_be_hex(tmp_path: Path) -> None:
    image = make_image(1)
    with pytest.raises(ImageFormatError, match=r"invalid v1 image id '\.\./x'"):
        write(tmp_path, image, v1_chain=[FakeV1("../x", b"{}")])
    assert not (tmp_path / "img.tar").exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_the_archive_and_a_layouts_index_are_made_under_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        out = write(tmp_path, make_image(1))
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == mode
    assert (tmp_path / "lay-img.tar" / "index.json").stat().st_mode & 0o777 == mode


def test_a_destination_that_cannot_be_replaced_is_left_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "img.tar").mkdir()
    (tmp_path / "img.tar" / "kept").write_bytes(b"x")
    with pytest.raises(IsADirectoryError):
        write(tmp_path, make_image(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tar", "lay-img.tar"], "no temporary archive left"
    assert [p.name for p in (tmp_path / "img.tar").iterdir()] == ["kept"]


def test_layers_compressed_in_parallel_equal_the_serial_ones(tmp_path: Path) -> None:
    """A plain archive's layers are compressed in threads, a gzipped archive's one by one: same blobs either way."""
    image = make_image(4)
    plain = write(tmp_path, image)
    packed = tmp_path / "img.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    with read_docker_archive(plain) as threaded, read_docker_archive(packed) as serial:
        assert threaded.root.raw == serial.root.raw
        for layer, tar in zip(threaded.root.layers, image.tars, strict=True):
            with threaded.open_blob(layer.digest) as f:
                blob = f.read()
            assert Digest.of(blob) == layer.digest
            assert gzip.decompress(blob) == tar


def test_opening_an_archive_removes_the_work_directories_of_killed_pushes(tmp_path: Path) -> None:
    from regtool.image.docker_archive import open_docker_archive

    archive = write(tmp_path, make_image(2))
    work = tmp_path / "work"
    work.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = work / f"regtool-archive-{dead.pid}-abc123"
    alive = work / f"regtool-archive-{os.getppid()}-def456"
    unrelated = work / "regtool-archive-ghijkl"  # made by another version: not ours to judge
    for directory in (orphan, alive, unrelated):
        (directory / "blobs").mkdir(parents=True)
        (directory / "blobs" / "x").write_bytes(b"compressed layer")
    with open_docker_archive(archive, work_dir=work) as opened:
        mine = [p.name for p in work.iterdir() if p.name.startswith(f"regtool-archive-{os.getpid()}-")]
        assert len(mine) == 1
        assert opened.diff_ids
    assert sorted(p.name for p in work.iterdir()) == sorted([alive.name, unrelated.name])
