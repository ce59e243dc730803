"""UnpackingStore: the docker-archive written while its blobs arrive, in any order, byte for byte what
``write_docker_archive`` writes from a store; every unusual layer left to ``finish``, which fails as the writer does."""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import json
import lzma
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import pytest

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import ImageFormatError, IntegrityError, RegtoolError
from regtool.image import compression, docker_archive, growing_blob
from regtool.image.blobstore import BlobStore, BlobWriter
from regtool.image.docker_archive import write_docker_archive
from regtool.image.layer_unpack import Stopped, UnpackingStore
from regtool.manifest import Manifest, parse_manifest
from tests.support.images import tar_bytes

TAGS = ["example.com/app:1"]
PIECE = 4096


@dataclass(frozen=True)
class _Image:
    manifest: Manifest
    config: bytes
    layers: tuple[bytes, ...]

    @property
    def config_digest(self) -> Digest:
        return Digest.of(self.config)


def _image(blobs: list[bytes], tars: list[bytes] | None = None, algorithm: str = "sha256") -> _Image:
    """An image of the layer ``blobs``; its diff_ids are those of ``tars`` (default: the blobs gunzipped)."""
    tars = tars if tars is not None else [gzip.decompress(blob) for blob in blobs]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [str(Digest.of(t, algorithm)) for t in tars]},
        }
    ).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": str(Digest.of(config)), "size": len(config)},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": str(Digest.of(b)), "size": len(b)} for b in blobs],
    }
    return _Image(parse_manifest(json.dumps(doc).encode(), mt.OCI_MANIFEST), config, tuple(blobs))


def _tar(size: int = 300_000) -> bytes:
    return tar_bytes({"data.bin": os.urandom(size), "etc/motd": b"hello\n" * 1000})


def _gzip_image(count: int = 3) -> _Image:
    return _image([gzip.compress(_tar(), compresslevel=1, mtime=0) for _ in range(count)])


def _reference(tmp_path: Path, image: _Image) -> Path:
    store = BlobStore(tmp_path / "reference-store")
    for blob in (image.config, *image.layers):
        store.put_bytes(None, blob)
    return write_docker_archive(store, image.manifest, image.config, TAGS, tmp_path / "reference.tar")


def _store(tmp_path: Path, image: _Image) -> UnpackingStore:
    return UnpackingStore(tmp_path / "work", image.manifest, TAGS, tmp_path / "app.tar")


def _write(store: UnpackingStore, blob: bytes, piece: int = PIECE) -> None:
    with store.open_writer(Digest.of(blob), len(blob)) as writer:
        for at in range(0, len(blob), piece):
            writer.write(blob[at : at + piece])
        writer.commit()


def _interleaved(store: UnpackingStore, blobs: list[bytes], piece: int = PIECE) -> None:
    """Every blob's writer open at once, a piece of each in turn, as concurrent downloads write them."""
    writers = [(store.open_writer(Digest.of(blob), len(blob)), blob) for blob in blobs]
    at = 0
    while any(at < len(blob) for _, blob in writers):
        for writer, blob in writers:
            if at < len(blob):
                writer.write(blob[at : at + piece])
        at += piece
    for writer, _ in writers:
        writer.commit()


def _unpack_files(store: UnpackingStore) -> list[str]:
    return sorted(p.name for p in store.unpack_dir.iterdir()) if store.unpack_dir.is_dir() else []


def _eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait for the unpackers' threads, which follow the writers a little behind."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"still not {what}"
        time.sleep(0.005)


def _side_files(store: UnpackingStore) -> list[str]:
    """The layers' side files (the temporary archive beside them is ``.<name>.<random>.tmp``)."""
    return [name for name in _unpack_files(store) if name.endswith(".tar")]


class _Fallbacks:
    """Counts the layers decompressed from their blobs (by ``finish`` or ``write_docker_archive``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = compression.open_decompressed

        def counting(stream: IO[bytes], *, what: str = "layer") -> BinaryIO:
            self.calls += 1
            return real(stream, what=what)

        monkeypatch.setattr(docker_archive, "open_decompressed", counting)


def _finish(store: UnpackingStore) -> Path:
    try:
        return store.finish()
    finally:
        store.close()


@pytest.mark.parametrize("piece", [1, 5, 4096, 1 << 20])
def test_layers_arriving_in_order_go_straight_into_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    image = _image([gzip.compress(_tar(20_000 if piece < 10 else 300_000), mtime=0) for _ in range(2)])
    reference = _reference(tmp_path, image).read_bytes()
    fallbacks = _Fallbacks(monkeypatch)
    store = _store(tmp_path, image)
    _write(store, image.config)
    first = image.layers[0]
    with store.open_writer(Digest.of(first), len(first)) as writer:
        half = len(first) // 2
        for at in range(0, half, piece):
            writer.write(first[at : min(at + piece, half)])
        # No side file: the layer at its turn is decompressed into the temporary archive, which grows.
        (archive,) = _unpack_files(store)
        assert archive.startswith(".app.tar.") and archive.endswith(".tmp")
        _eventually(lambda: (store.unpack_dir / archive).stat().st_size > half, "half the layer in the archive")
        assert _side_files(store) == []
        for at in range(half, len(first), piece):
            writer.write(first[at : at + piece])
        writer.commit()
    _write(store, image.layers[1], piece)
    assert _side_files(store) == [] and not (tmp_path / "app.tar").exists()
    assert _finish(store).read_bytes() == reference
    assert fallbacks.calls == 0
    assert all(store.has(Digest.of(layer)) for layer in image.layers), "the blobs stay until the pull ends"
    assert not store.unpack_dir.exists()


def test_a_layer_that_inflates_far_beyond_its_pieces_comes_out_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = _image([gzip.compress(tar_bytes({"zeros": bytes(40 << 20)}), compresslevel=9, mtime=0)])
    reference = _reference(tmp_path, image).read_bytes()
    fallbacks = _Fallbacks(monkeypatch)
    store = _store(tmp_path, image)
    _write(store, image.config)
    _write(store, image.layers[0], 1 << 20)
    assert _finish(store).read_bytes() == reference
    assert fallbacks.calls == 0


class _PartialGone:
    """``io`` as an unpacker's reader sees it when its writer has committed first: the partial it was told
    about is renamed into ``blobs/`` before the reader opens it."""

    def __init__(self) -> None:
        self.missed = 0

    def FileIO(self, path: Path, mode: str) -> io.FileIO:
        if str(path).endswith(".partial"):
            self.missed += 1
            raise FileNotFoundError(path)
        return io.FileIO(path, mode)


def test_an_unpacker_that_missed_the_partial_reads_the_committed_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = _gzip_image(2)
    reference = _reference(tmp_path, image).read_bytes()
    fallbacks = _Fallbacks(monkeypatch)
    gone = _PartialGone()
    monkeypatch.setattr(growing_blob, "io", gone)
    store = _store(tmp_path, image)
    _reverse(store, image)
    assert _finish(store).read_bytes() == reference
    assert (gone.missed, fallbacks.calls) == (2, 0)


def _all_in_already(store: UnpackingStore, image: _Image) -> bool:
    """Every layer's tar is in the temporary archive (placed while the blobs arrived, before ``finish``)."""
    (archive,) = [name for name in _unpack_files(store) if name.endswith(".tmp")]
    return (store.unpack_dir / archive).stat().st_size > sum(len(gzip.decompress(blob)) for blob in image.layers)


def _reverse(store: UnpackingStore, image: _Image) -> None:
    _write(store, image.config)
    for blob in reversed(image.layers):
        _write(store, blob)
    assert _all_in_already(store, image)


def _interleave_all(store: UnpackingStore, image: _Image) -> None:
    _write(store, image.config)
    _interleaved(store, list(image.layers))
    assert _all_in_already(store, image)


def _config_last(store: UnpackingStore, image: _Image) -> None:
    _interleaved(store, list(image.layers))
    assert len(_side_files(store)) == len(image.layers)  # every writer ended: their threads are done
    _write(store, image.config)
    assert _all_in_already(store, image)


def _config_midway(store: UnpackingStore, image: _Image) -> None:
    # The layers' first halves go to side files; the config's arrival hands the first layer its place, then
    # each layer's turn comes while it is still downloading (what it holds so far is copied, the rest goes in).
    writers: list[tuple[BlobWriter, bytes]] = []
    for blob in image.layers:
        writer = store.open_writer(Digest.of(blob), len(blob))
        writer.write(blob[: len(blob) // 2])
        writers.append((writer, blob))
    _eventually(lambda: len(_side_files(store)) == len(image.layers), "a side file per layer")
    _write(store, image.config)
    for index, (writer, blob) in enumerate(writers):
        writer.write(blob[len(blob) // 2 : -10])
        # At its turn, the layer's next bytes took its side file into the archive.
        _eventually(lambda: len(_side_files(store)) == len(image.layers) - index - 1, "taken in")  # noqa: B023
        writer.write(blob[-10:])
        writer.commit()


def _config_there_already(store: UnpackingStore, image: _Image) -> None:
    for blob in image.layers:
        _write(store, blob)


@pytest.mark.parametrize(
    "arrive",
    [_reverse, _interleave_all, _config_last, _config_midway],
    ids=["last-layer-first", "interleaved", "config-last", "config-midway"],
)
@pytest.mark.parametrize("kernel_copy", [True, False], ids=["copy_file_range", "no-copy_file_range"])
def test_layers_in_any_order_make_the_same_archive(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arrive: Callable[[UnpackingStore, _Image], None],
    kernel_copy: bool,
) -> None:
    image = _gzip_image()
    reference = _reference(tmp_path, image).read_bytes()
    if not kernel_copy:

        def refuse(*args: object) -> int:
            raise OSError(errno.EXDEV, "cross-device")

        monkeypatch.setattr(os, "copy_file_range", refuse)
    fallbacks = _Fallbacks(monkeypatch)
    store = _store(tmp_path, image)
    arrive(store, image)
    assert _finish(store).read_bytes() == reference
    assert fallbacks.calls == 0, "every layer was decompressed while it arrived"


def test_a_config_already_in_the_work_directory_plans_the_archive_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = _gzip_image(2)
    reference = _reference(tmp_path, image).read_bytes()
    fallbacks = _Fallbacks(monkeypatch)
    BlobStore(tmp_path / "work").put_bytes(None, image.config)  # what an interrupted pull left
    store = _store(tmp_path, image)
    assert len(_unpack_files(store)) == 1, "the temporary archive is open before any layer arrives"
    _config_there_already(store, image)
    assert _side_files(store) == []
    assert _finish(store).read_bytes() == reference
    assert fallbacks.calls == 0


@pytest.mark.parametrize(
    "pack",
    [
        lambda t: t,
        lambda t: b"abc",
        lambda t: bz2.compress(t),
        lambda t: lzma.compress(t),
        lambda t: gzip.compress(t[:1000], mtime=0) + gzip.compress(t[1000:], mtime=0),
        lambda t: gzip.compress(t, mtime=0) + bytes(1024),
        lambda t: gzip.compress(t, mtime=0)[:-5000],
        lambda t: (lambda g: g[:2000] + bytes(500) + g[2500:])(gzip.compress(t, mtime=0)),
    ],
    ids=["plain", "shorter-than-a-magic", "bzip2", "xz", "two-gzip-members", "zero-padding", "cut-short", "corrupt"],
)
@pytest.mark.parametrize("where", [0, 1], ids=["at-its-turn", "ahead-of-its-turn"])
def test_an_unusual_layer_ends_as_the_archive_writer_ends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pack: Callable[[bytes], bytes], where: int
) -> None:
    tar = _tar()
    odd = pack(tar)
    usual = gzip.compress(_tar(), mtime=0)
    blobs = [odd, usual] if where == 0 else [usual, odd]
    odd_tar = odd if odd == b"abc" else tar
    image = _image(blobs, [odd_tar, gzip.decompress(usual)] if where == 0 else [gzip.decompress(usual), odd_tar])
    expected: bytes | RegtoolError
    try:
        expected = _reference(tmp_path, image).read_bytes()
    except RegtoolError as exc:
        expected = exc
    fallbacks = _Fallbacks(monkeypatch)
    store = _store(tmp_path, image)
    _write(store, image.config)
    for blob in reversed(blobs):  # the second layer first: ahead of its turn it goes to a side file
        _write(store, blob)
    if isinstance(expected, bytes):
        assert _finish(store).read_bytes() == expected
    else:
        with pytest.raises(type(expected)) as caught:
            _finish(store)
        assert str(caught.value) == str(expected)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["reference-store", "work"]
        assert not store.unpack_dir.exists()
    # Only the unusual layer was decompressed again from its blob; a plain one needs no decompressing.
    assert fallbacks.calls == (0 if odd in {tar, b"abc"} else 1)


@pytest.mark.parametrize("wrong", [0, 1], ids=["straight-in", "from-a-side-file"])
def test_a_layer_with_the_wrong_diff_id_leaves_no_archive(tmp_path: Path, wrong: int) -> None:
    blobs = [gzip.compress(_tar(), mtime=0) for _ in range(2)]
    tars = [gzip.decompress(blob) for blob in blobs]
    tars[wrong] = b"not the layer"
    image = _image(blobs, tars)
    store = _store(tmp_path, image)
    _write(store, image.config)
    for blob in reversed(blobs) if wrong else blobs:
        _write(store, blob)
    with pytest.raises(IntegrityError) as caught:
        _finish(store)
    assert str(caught.value) == (
        f"layer {Digest.of(blobs[wrong])}: uncompressed content hashes to {Digest.of(gzip.decompress(blobs[wrong]))}, "
        f"but the config's diff_id is {Digest.of(b'not the layer')}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert not store.unpack_dir.exists()


def test_sha512_diff_ids_are_checked_by_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = [gzip.compress(_tar(), mtime=0) for _ in range(2)]
    image = _image(blobs, algorithm="sha512")
    reference = _reference(tmp_path, image).read_bytes()
    fallbacks = _Fallbacks(monkeypatch)
    store = _store(tmp_path, image)
    for blob in (image.config, *image.layers):
        _write(store, blob)
    assert _finish(store).read_bytes() == reference
    assert fallbacks.calls == 2, "an unpacker's sha256 cannot stand for a sha512 diff_id"


def test_a_layer_twice_in_the_image_fills_both_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared, other = (gzip.compress(_tar(50_000), mtime=0) for _ in range(2))
    image = _image([shared, other, shared])
    reference = _reference(tmp_path, image).read_bytes()
    fallbacks = _Fallbacks(monkeypatch)
    store = _store(tmp_path, image)
    _write(store, image.config)
    _interleaved(store, [shared, other])
    assert _finish(store).read_bytes() == reference
    assert fallbacks.calls == 0
    assert store.has(Digest.of(shared)) and store.has(Digest.of(other))


def test_a_download_started_over_writes_its_layer_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = _gzip_image(2)
    reference = _reference(tmp_path, image).read_bytes()
    fallbacks = _Fallbacks(monkeypatch)
    store = _store(tmp_path, image)
    _write(store, image.config)
    first = image.layers[0]
    # A body cut short without a resume, then a registry that ignored the Range: the writer starts over.
    with store.open_writer(Digest.of(first), len(first)) as writer:
        writer.write(first[:100_000])
        writer.abort(keep_partial=False)
    # Bytes that do not match the digest: the commit fails, the layer is fetched again from byte 0.
    with pytest.raises(IntegrityError), store.open_writer(Digest.of(first), len(first), resume=False) as writer:
        writer.write(image.layers[1][: len(first)])
        writer.commit()
    _write(store, first)
    _write(store, image.layers[1])
    assert _finish(store).read_bytes() == reference
    assert fallbacks.calls == 0, "the last attempt went straight in"


def test_a_resumed_partial_is_decompressed_from_its_blob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = _gzip_image(2)
    reference = _reference(tmp_path, image).read_bytes()
    fallbacks = _Fallbacks(monkeypatch)
    store = _store(tmp_path, image)
    _write(store, image.config)
    first = image.layers[0]
    with store.open_writer(Digest.of(first), len(first)) as writer:
        writer.write(first[:10_000])
        writer.abort(keep_partial=True)
    with store.open_writer(Digest.of(first), len(first), resume=True) as writer:
        assert writer.offset == 10_000
        writer.write(first[10_000:])
        writer.commit()
    _write(store, image.layers[1])
    assert _finish(store).read_bytes() == reference
    assert fallbacks.calls == 1


def test_close_after_a_failed_download_leaves_the_blobs_for_a_resume(tmp_path: Path) -> None:
    image = _gzip_image(2)
    store = _store(tmp_path, image)
    _write(store, image.config)
    _write(store, image.layers[1])
    with store.open_writer(Digest.of(image.layers[0]), len(image.layers[0])) as writer:
        writer.write(image.layers[0][:50_000])
        writer.abort(keep_partial=True)
    store.close()
    assert not store.unpack_dir.exists() and not (tmp_path / "app.tar").exists()
    assert store.has(Digest.of(image.layers[1])) and store.has(image.config_digest)
    resumed = _store(tmp_path, image)
    with resumed.open_writer(Digest.of(image.layers[0]), len(image.layers[0])) as writer:
        writer.write(image.layers[0][writer.offset :])
        writer.commit()
    assert _finish(resumed).read_bytes() == _reference(tmp_path, image).read_bytes()


def test_an_image_the_archive_cannot_hold_is_refused_by_finish(tmp_path: Path) -> None:
    blobs = [gzip.compress(_tar(), mtime=0) for _ in range(2)]
    image = _image(blobs, [gzip.decompress(blobs[0])])  # one diff_id for two layers
    store = _store(tmp_path, image)
    _write(store, image.config)
    for blob in blobs:
        _write(store, blob)
    with pytest.raises(ImageFormatError) as caught:
        _finish(store)
    assert str(caught.value) == f"{tmp_path / 'app.tar'}: the config lists 1 diff_ids for 2 layers"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert not store.unpack_dir.exists()


def test_a_store_opened_after_a_crash_drops_what_the_crashed_one_left(tmp_path: Path) -> None:
    image = _gzip_image(2)
    crashed = _store(tmp_path, image)
    _write(crashed, image.config)
    _write(crashed, image.layers[1])  # ahead of its turn: a side file beside the temporary archive
    _eventually(lambda: len(_side_files(crashed)) == 1, "the side file complete")
    # No close(): the process was killed. The next pull opens a store on the same directory.
    resumed = _store(tmp_path, image)
    (archive,) = _unpack_files(resumed)
    assert archive.endswith(".tmp"), "only the new temporary archive: the old one and the side file are gone"
    _write(resumed, image.layers[0])
    _write(resumed, image.layers[1])
    assert _finish(resumed).read_bytes() == _reference(tmp_path, image).read_bytes()


def test_finish_told_to_stop_publishes_nothing(tmp_path: Path) -> None:
    image = _gzip_image(2)
    store = _store(tmp_path, image)
    for blob in (image.config, *image.layers):
        _write(store, blob)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        _finish_with(store, stop)
    assert not (tmp_path / "app.tar").exists()
    assert not store.unpack_dir.exists()
    assert all(store.has(Digest.of(layer)) for layer in image.layers), "kept for the next run"


def _finish_with(store: UnpackingStore, stop: threading.Event) -> Path:
    try:
        return store.finish(stop)
    finally:
        store.close()


def test_the_archive_is_made_as_any_new_file_is_under_the_umask(tmp_path: Path) -> None:
    image = _gzip_image(1)
    old = os.umask(0o077)
    try:
        store = _store(tmp_path, image)
        for blob in (image.config, *image.layers):
            _write(store, blob)
        path = _finish(store)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
