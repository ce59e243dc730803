"""UnpackingStore: layers decompressed beside their blobs while written, and every unusual layer left alone."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from pathlib import Path

import pytest

from regtool.digest import Digest
from regtool.errors import IntegrityError
from regtool.image.layer_unpack import UNPACK_DIR, UnpackingStore
from tests.support.images import tar_bytes


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
