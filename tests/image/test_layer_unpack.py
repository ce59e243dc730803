"""UnpackingStore: layers decompressed beside their blobs while written, and every unusual layer left alone."""

from __future__ import annotations

import bz2
import errno
import gzip
import lzma
import os
from pathlib import Path

import pytest

from regtool.digest import Digest
from regtool.errors import IntegrityError
from regtool.image.docker_archive import write_docker_archive
from regtool.image.layer_unpack import UNPACK_DIR, UnpackedLayer, UnpackingStore
from tests.support.images import BuiltImage, image_manifest, tar_bytes


def _tar(size: int = 300_000) -> bytes:
    return tar_bytes({"data.bin": os.urandom(size), "etc/motd": b"hello\n" * 1000})


def _write(store: UnpackingStore, blob: bytes, piece: int = 4096) -> Digest:
    digest = Digest.of(blob)
    with store.open_writer(digest, len(blob)) as writer:
        for at in range(0, len(blob), piece):
            writer.write(blob[at : at + piece])
        writer.commit()
    return digest


def _side_files(root: Path) -> list[Path]:
    unpack = root / UNPACK_DIR
    return sorted(unpack.iterdir()) if unpack.is_dir() else []


@pytest.mark.parametrize("piece", [1, 5, 4096, 1 << 20])
def test_a_gzip_layer_is_decompressed_beside_its_blob_whatever_the_write_sizes(tmp_path: Path, piece: int) -> None:
    tar = _tar(20_000 if piece == 1 else 300_000)
    blob = gzip.compress(tar, compresslevel=6, mtime=0)
    store = UnpackingStore(tmp_path, layers={Digest.of(blob)})
    digest = _write(store, blob, piece)
    layer = store.unpacked()[digest]
    assert layer.path.read_bytes() == tar
    assert (layer.size, layer.diff_id) == (len(tar), Digest.of(tar))
    assert store.path(digest).read_bytes() == blob


def test_a_layer_that_inflates_far_beyond_its_pieces_comes_out_whole(tmp_path: Path) -> None:
    tar = tar_bytes({"zeros": bytes(40 << 20)})
    blob = gzip.compress(tar, compresslevel=9, mtime=0)
    store = UnpackingStore(tmp_path, layers={Digest.of(blob)})
    digest = _write(store, blob, 1 << 20)
    layer = store.unpacked()[digest]
    assert (layer.size, layer.diff_id) == (len(tar), Digest.of(tar))


@pytest.mark.parametrize("blob", [_tar(), b"abc"], ids=["tar", "shorter-than-a-magic"])
def test_a_plain_layer_is_copied_as_it_is(tmp_path: Path, blob: bytes) -> None:
    store = UnpackingStore(tmp_path, layers={Digest.of(blob)})
    digest = _write(store, blob)
    layer = store.unpacked()[digest]
    assert layer.path.read_bytes() == blob and layer.diff_id == Digest.of(blob)


@pytest.mark.parametrize(
    "pack",
    [
        lambda t: bz2.compress(t),
        lambda t: lzma.compress(t),
        lambda t: gzip.compress(t[:1000], mtime=0) + gzip.compress(t[1000:], mtime=0),
        lambda t: gzip.compress(t, mtime=0) + bytes(1024),
        lambda t: gzip.compress(t, mtime=0)[:-5000],
        lambda t: (lambda g: g[:2000] + bytes(500) + g[2500:])(gzip.compress(t, mtime=0)),
    ],
    ids=["bzip2", "xz", "two-gzip-members", "zero-padding", "cut-short", "corrupt"],
)
def test_an_unusual_layer_is_left_to_the_archive_writer(tmp_path: Path, pack: object) -> None:
    blob = pack(_tar())  # type: ignore[operator]
    store = UnpackingStore(tmp_path, layers={Digest.of(blob)})
    digest = _write(store, blob)
    assert store.unpacked() == {}
    assert _side_files(tmp_path) == []
    assert store.path(digest).read_bytes() == blob


def test_an_aborted_or_mismatching_blob_leaves_no_side_file(tmp_path: Path) -> None:
    blob = gzip.compress(_tar(), mtime=0)
    digest = Digest.of(blob)
    store = UnpackingStore(tmp_path, layers={digest})
    with store.open_writer(digest, len(blob)) as writer:
        writer.write(blob[:10_000])
        writer.abort(keep_partial=True)
    assert _side_files(tmp_path) == []
    wrong = Digest.of(b"something else")
    store = UnpackingStore(tmp_path, layers={wrong})
    with pytest.raises(IntegrityError), store.open_writer(wrong, len(blob), resume=False) as writer:
        writer.write(blob)
        writer.commit()
    assert store.unpacked() == {} and _side_files(tmp_path) == []


def test_a_resumed_partial_and_a_blob_not_named_a_layer_are_not_unpacked(tmp_path: Path) -> None:
    blob = gzip.compress(_tar(), mtime=0)
    digest = Digest.of(blob)
    store = UnpackingStore(tmp_path, layers={digest})
    with store.open_writer(digest, len(blob)) as writer:
        writer.write(blob[:10_000])
        writer.abort(keep_partial=True)
    with store.open_writer(digest, len(blob), resume=True) as writer:
        assert writer.offset == 10_000
        writer.write(blob[10_000:])
        writer.commit()
    config = b'{"rootfs": {}}'
    _write(store, config)
    assert store.unpacked() == {} and _side_files(tmp_path) == []
    assert store.path(digest).read_bytes() == blob


def _unpacked_image(tmp_path: Path) -> tuple[UnpackingStore, BuiltImage]:
    image = image_manifest([{"etc/motd": b"hello"}, {"data.bin": os.urandom(200_000)}, {"etc/motd": b"bye"}])
    store = UnpackingStore(tmp_path / "work", layers=set(image.layer_digests))
    for data in image.blobs.values():
        _write(store, data)
    return store, image


@pytest.mark.parametrize(
    ("kernel_copy", "skip"),
    [(True, None), (False, None), (True, 1)],
    ids=["copy_file_range", "no-copy_file_range", "mixed"],
)
def test_the_archive_from_unpacked_layers_is_byte_for_byte_the_decompressed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool, skip: int | None
) -> None:
    store, image = _unpacked_image(tmp_path)
    unpacked = dict(store.unpacked())
    assert set(unpacked) == set(image.layer_digests)
    if skip is not None:  # a layer the follower gave up on is decompressed from its blob, between copied ones
        del unpacked[image.layer_digests[skip]]
    write_docker_archive(store, image.manifest, image.config, ["app:1"], tmp_path / "reference.tar")
    if not kernel_copy:

        def refuse(*args: object) -> int:
            raise OSError(errno.EXDEV, "cross-device")

        monkeypatch.setattr(os, "copy_file_range", refuse)
    write_docker_archive(store, image.manifest, image.config, ["app:1"], tmp_path / "fast.tar", unpacked=unpacked)
    assert (tmp_path / "fast.tar").read_bytes() == (tmp_path / "reference.tar").read_bytes()


def test_an_unpacked_layer_with_the_wrong_diff_id_leaves_no_archive(tmp_path: Path) -> None:
    store, image = _unpacked_image(tmp_path)
    layer = image.layer_digests[1]
    unpacked = dict(store.unpacked())
    unpacked[layer] = UnpackedLayer(unpacked[layer].path, unpacked[layer].size, Digest.of(b"other"))
    with pytest.raises(IntegrityError) as caught:
        write_docker_archive(store, image.manifest, image.config, [], tmp_path / "app.tar", unpacked=unpacked)
    assert str(caught.value) == (
        f"layer {layer}: uncompressed content hashes to {Digest.of(b'other')}, "
        f"but the config's diff_id is {image.diff_ids[1]}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_a_layer_twice_in_the_image_is_copied_twice_and_consumed_after_the_last(tmp_path: Path) -> None:
    image = image_manifest([{"etc/motd": b"hello"}, {"data.bin": os.urandom(50_000)}, {"etc/motd": b"hello"}])
    store = UnpackingStore(tmp_path / "work", layers=set(image.layer_digests))
    for data in image.blobs.values():
        _write(store, data)
    write_docker_archive(store, image.manifest, image.config, ["app:1"], tmp_path / "reference.tar")
    fast = tmp_path / "fast.tar"
    write_docker_archive(store, image.manifest, image.config, ["app:1"], fast, consume=True, unpacked=store.unpacked())
    assert fast.read_bytes() == (tmp_path / "reference.tar").read_bytes()
    assert _side_files(tmp_path / "work") == []
    assert not any(store.has(digest) for digest in image.layer_digests)
