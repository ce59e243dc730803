"""A docker-archive push uploads each layer while it is gzipped, against a real ``regtool serve`` and distribution.

What must hold: the digests are those of the compress-first path (``read_docker_archive``: deterministic for a
given regtool version), the pulled bytes equal the work directory's, a damaged archive or a cut stream leaves no
tagged image and no work directory, and a stream the network cuts is finished from the compressed file.
"""

from __future__ import annotations

import gzip
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regtool.client import Client
from regtool.client.v2 import archivepush
from regtool.errors import ImageFormatError, IntegrityError
from regtool.image.docker_archive import read_docker_archive, write_docker_archive
from regtool.image.oci_layout import OciLayout
from regtool.reference import Reference
from tests.support.distribution import Distribution, distribution  # noqa: F401
from tests.support.faultproxy import Fault, run_fault_proxy
from tests.support.images import write_random_image
from tests.support.serve import RunningServe, serve  # noqa: F401

pytestmark = pytest.mark.anyio

# Above archivepush's _STREAM_MIN (4 MiB), so the layers go up as streams.
LAYER_SIZE = 12 << 20


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    layout_path = tmp_path / "layout"
    manifest = write_random_image(layout_path, "1.0", count=2, size=LAYER_SIZE, gzip_layers=False)
    layout = OciLayout.open(layout_path)
    assert manifest.config is not None
    config = layout.read_blob(manifest.config.digest)
    return write_docker_archive(layout, manifest, config, ["team/app:1.0"], tmp_path / "app.tar")


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own upload state and memory of compressed layers."""
    monkeypatch.setenv("REGTOOL_STATE_DIR", str(tmp_path / "state" / "uploads"))
    return tmp_path / "state"


@pytest.fixture
def work_dir(tmp_path: Path) -> Iterator[Path]:
    """The temp directory the push's work directory is made in, to see it removed afterwards."""
    path = tmp_path / "tmp"
    path.mkdir()
    before = tempfile.tempdir
    tempfile.tempdir = str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = before


def _reference(host: str, name: str) -> Reference:
    return Reference.parse(f"{host}/{name}:1.0")


async def test_streamed_push_to_distribution_has_the_compress_first_digests(
    archive: Path,
    distribution: Distribution,  # noqa: F811
    tmp_path: Path,
    work_dir: Path,
) -> None:
    with read_docker_archive(archive) as expected:
        expected_layers = [
            expected.store.path(layer.digest).read_bytes() for layer in expected.root.layers
        ]  # the compress-first path's bytes
        expected_digest = expected.root.digest
        expected_layer_digests = [layer.digest for layer in expected.root.layers]
    ref = _reference(distribution.host, "team/app")
    with run_fault_proxy(distribution.port) as proxy:
        async with Client() as client:
            pushed = await client.push(str(archive), Reference.parse(f"{proxy.host}/team/app:1.0"))
        patches = proxy.exchanges("PATCH", r"/blobs/uploads/")
    assert pushed.digest == expected_digest
    assert pushed.blobs_uploaded == 3 and pushed.recompressed
    # Both layers went up as streams: PATCHes carrying them, before their digests were known.
    assert sorted(e.request_bytes for e in patches) == sorted(len(b) for b in expected_layers)
    assert list(work_dir.iterdir()) == []
    async with Client() as client:
        pulled = await client.pull(ref, tmp_path / "pulled")
    assert pulled.digest == expected_digest
    manifest = OciLayout.open(tmp_path / "pulled").manifest(OciLayout.open(tmp_path / "pulled").resolve(None))
    assert [layer.digest for layer in manifest.layers] == expected_layer_digests
    for layer, data in zip(manifest.layers, expected_layers, strict=True):
        assert (tmp_path / "pulled" / "blobs" / "sha256" / layer.digest.encoded).read_bytes() == data


async def test_streamed_push_to_serve_is_pulled_back_as_the_same_archive(
    archive: Path,
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
    work_dir: Path,
) -> None:
    ref = _reference(serve.host, "team/app")
    async with Client() as client:
        pushed = await client.push(str(archive), ref)
        streamed = [e for e in serve.requests.events() if e.method == "PATCH"]
        serve.requests.clear()
        again = await client.push(str(archive), ref)
        after = serve.requests.events()
        pulled = await client.pull(ref, tmp_path / "back.tar")
    assert [e.status for e in streamed] == [202, 202]
    assert all(e.received > LAYER_SIZE for e in streamed)
    # Again: the remembered compressed digests are found at the registry; nothing is compressed or sent.
    assert again.digest == pushed.digest
    assert (again.blobs_skipped, again.blobs_uploaded, again.bytes_uploaded) == (3, 0, 0)
    assert not [e for e in after if e.method in {"POST", "PATCH"}]
    assert pulled.digest == pushed.digest
    with tarfile.open(archive) as original, tarfile.open(tmp_path / "back.tar") as back:
        for member in original.getmembers():
            if member.name.endswith("layer.tar"):
                first, second = original.extractfile(member), back.extractfile(member.name)
                assert first is not None and second is not None
                assert first.read() == second.read()
    assert list(work_dir.iterdir()) == []


def _flip(path: Path, position: int) -> None:
    with path.open("r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0xFF]))


async def test_a_layer_not_matching_its_diff_id_tags_nothing(
    archive: Path,
    serve: RunningServe,  # noqa: F811
    work_dir: Path,
) -> None:
    _flip(archive, archive.stat().st_size // 3)  # inside the first layer's data
    ref = _reference(serve.host, "team/bad")
    async with Client() as client:
        with pytest.raises(IntegrityError, match=r"app\.tar.*diff_id"):
            await client.push(str(archive), ref)
    with httpx.Client(base_url=serve.url) as http:
        assert http.head("/v2/team/bad/manifests/1.0").status_code == 404
    closes = [e for e in serve.requests.events() if e.method == "PUT" and "digest=" in e.query]
    assert len(closes) <= 1  # the damaged layer's upload was never closed (the other one may have been)
    assert list(work_dir.iterdir()) == []


async def test_an_archive_cut_inside_a_layer_is_a_format_error(
    archive: Path,
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
    work_dir: Path,
) -> None:
    cut = tmp_path / "cut.tar"
    with archive.open("rb") as src, cut.open("wb") as dst:
        dst.write(src.read(LAYER_SIZE + LAYER_SIZE // 2))
    ref = _reference(serve.host, "team/cut")
    async with Client() as client:
        with pytest.raises(ImageFormatError, match=r"cut\.tar.*truncated"):
            await client.push(str(cut), ref)
    with httpx.Client(base_url=serve.url) as http:
        assert http.head("/v2/team/cut/manifests/1.0").status_code == 404
    assert list(work_dir.iterdir()) == []


async def test_a_stream_cut_by_the_network_is_finished_from_the_compressed_file(
    archive: Path,
    serve: RunningServe,  # noqa: F811
    work_dir: Path,
) -> None:
    with read_docker_archive(archive) as expected:
        expected_digest = expected.root.digest
    with run_fault_proxy(serve.port) as proxy:
        proxy.add(Fault.drop_request(after=3 << 20, method="PATCH", path=r"/blobs/uploads/"))
        async with Client() as client:
            pushed = await client.push(str(archive), Reference.parse(f"{proxy.host}/team/cut:1.0"))
        dropped = [e for e in proxy.exchanges("PATCH") if e.fault == "drop_request"]
        closes = proxy.exchanges("PUT", r"/blobs/uploads/")
    assert len(dropped) == 1
    assert pushed.digest == expected_digest and pushed.blobs_uploaded == 3
    assert pushed.retries >= 1
    assert len(closes) == 3  # two layers (one streamed, one from its file) and the config
    with httpx.Client(base_url=serve.url) as http:
        assert http.head("/v2/team/cut/manifests/1.0").status_code == 200
    assert list(work_dir.iterdir()) == []


async def test_streams_are_cut_into_patches_of_the_chunk_size(
    archive: Path,
    serve: RunningServe,  # noqa: F811
) -> None:
    with read_docker_archive(archive) as expected:
        expected_digest, layers = expected.root.digest, expected.root.layers
    chunk = 2 << 20
    async with Client() as client:
        pushed = await client.push(str(archive), _reference(serve.host, "team/chunks"), chunk_size=chunk)
    patches = [e for e in serve.requests.events() if e.method == "PATCH"]
    assert pushed.digest == expected_digest
    assert len(patches) >= 2 * (LAYER_SIZE // chunk)
    assert [(e.status, e.received) for e in patches if e.status != 202 or e.received > chunk] == []
    assert pushed.retries == 0  # every layer went up as its stream
    assert sum(e.received for e in patches) == sum(layer.size for layer in layers)


async def test_a_stream_goes_up_in_patches_a_registry_writes_out_as_it_goes(
    archive: Path,
    serve: RunningServe,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Below the default chunk size (256 MiB), a stream is still cut at the stream's own cap, so the registry
    # writes each part out while the rest arrives (the cap is 64 MiB; 4 MiB here, on 12 MiB layers).
    cap = 4 << 20
    monkeypatch.setattr(archivepush, "_STREAM_PATCH", cap)
    async with Client() as client:
        pushed = await client.push(str(archive), _reference(serve.host, "team/capped"))
    patches = [e for e in serve.requests.events() if e.method == "PATCH"]
    assert pushed.retries == 0
    assert len(patches) >= 2 * (LAYER_SIZE // cap)
    assert max(e.received for e in patches) == cap


async def test_a_push_interrupted_after_a_layer_went_up_skips_that_layer_when_run_again(
    tmp_path: Path,
    serve: RunningServe,  # noqa: F811
) -> None:
    # A small layer finishes long before a large one; the push is cancelled once the small one is committed.
    import asyncio
    import os

    from tests.support.images import write_image

    layout_path = tmp_path / "uneven"
    image = write_image(layout_path, "1.0", [{"small.bin": os.urandom(6 << 20)}, {"large.bin": os.urandom(60 << 20)}])
    layout = OciLayout.open(layout_path)
    archive = write_docker_archive(layout, image.manifest, image.config, ["team/app:1.0"], tmp_path / "uneven.tar")
    ref = _reference(serve.host, "team/resumed")
    progress = _Recorded()
    async with Client(progress=progress) as client:
        push = asyncio.ensure_future(client.push(str(archive), ref))
        while "done" not in progress.finished.values():
            assert not push.done(), "the push ended before its first layer was committed"
            await asyncio.sleep(0.005)
        push.cancel()
        with pytest.raises(asyncio.CancelledError):
            await push
        first_run = len(serve.requests.events())
        pushed = await client.push(str(archive), ref)
    with read_docker_archive(archive) as expected:
        assert pushed.digest == expected.root.digest
        (small, large), config = expected.root.layers, expected.root.config
    rerun = serve.requests.events()[first_run:]
    # The small layer is found by its remembered digest (a HEAD) and not sent again: only the large layer and
    # the config go up.
    assert [e.status for e in rerun if e.method == "HEAD" and str(small.digest) in e.path] == [200]
    assert sum(e.received for e in rerun if "/blobs/uploads/" in e.path) == large.size + config.size


class _Recorded:
    """A Progress that adds up what each transfer was told."""

    def __init__(self) -> None:
        self.advanced: dict[str, int] = {}
        self.finished: dict[str, str] = {}

    def start(self, key: str, description: str, total: int | None) -> None:
        self.advanced.setdefault(key, 0)

    def advance(self, key: str, nbytes: int) -> None:
        self.advanced[key] += nbytes

    def finish(self, key: str, *, status: str = "done") -> None:
        self.finished[key] = status

    def event(self, name: str, **fields: object) -> None:
        pass


async def test_a_streamed_layer_reports_its_bytes_as_they_go(
    archive: Path,
    serve: RunningServe,  # noqa: F811
) -> None:
    with read_docker_archive(archive) as expected:
        sizes = sorted(layer.size for layer in expected.root.layers)
    progress = _Recorded()
    async with Client(progress=progress) as client:
        await client.push(str(archive), _reference(serve.host, "team/progress"))
    streamed = [key for key in progress.advanced if key.startswith("layer ")]
    assert sorted(progress.advanced[key] for key in streamed) == sizes
    assert {progress.finished[key] for key in streamed} == {"done"}


async def test_a_compressed_archive_streams_its_layers_one_after_the_other(
    archive: Path,
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A gzipped archive is read front to back: its layers compress in order, each streamed as it goes."""
    packed = tmp_path / "app.tar.gz"
    with archive.open("rb") as src, gzip.open(packed, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    with read_docker_archive(archive) as expected:
        expected_digest = expected.root.digest
    ref = _reference(serve.host, "team/packed")
    async with Client() as client:
        pushed = await client.push(str(packed), ref)
        again = await client.push(str(packed), ref)
    patches = [e for e in serve.requests.events() if e.method == "PATCH"]
    assert pushed.digest == expected_digest == again.digest
    assert (pushed.blobs_uploaded, pushed.retries) == (3, 0)
    assert [e.status for e in patches] == [202, 202] and all(e.received > LAYER_SIZE for e in patches)
    assert (again.blobs_skipped, again.bytes_uploaded) == (3, 0)
