from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
from typing import IO

import pytest

from regtool.errors import ImageFormatError
from regtool.image.compression import (
    Compression,
    gzip_stream,
    is_tar,
    open_decompressed,
    sniff,
    zstd_available,
)
from tests.image.builders import layer_tar

TAR = layer_tar({"a.txt": b"hello\n" * 1000, "b/c.bin": os.urandom(3000)})
ZSTD_FRAME = bytes.fromhex("28b52ffd2000010000")  # an empty zstd frame


class OneWay(io.RawIOBase):
    """A non-seekable stream, like an HTTP body."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._buf.read(len(b))
        b[: len(data)] = data
        return len(data)


@pytest.mark.parametrize(
    ("blob", "kind"),
    [
        (gzip.compress(TAR), Compression.GZIP),
        (bz2.compress(TAR), Compression.BZIP2),
        (lzma.compress(TAR), Compression.XZ),
        (ZSTD_FRAME, Compression.ZSTD),
        (TAR, Compression.NONE),
        (b"", Compression.NONE),
    ],
)
def test_sniff(blob: bytes, kind: Compression) -> None:
    assert sniff(blob[:512]) is kind


def test_is_tar() -> None:
    assert is_tar(TAR[:512])
    assert is_tar(bytes(512))  # an empty tar is two zero blocks
    assert not is_tar(b"{}")
    assert not is_tar(gzip.compress(TAR)[:512])


def read_all(f: IO[bytes]) -> bytes:
    out = bytearray()
    while chunk := f.read(4096):
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress, lambda b: b])
@pytest.mark.parametrize("seekable", [True, False])
def test_open_decompressed(compress: object, seekable: bool) -> None:
    blob = compress(TAR)  # type: ignore[operator]
    raw: IO[bytes] = io.BytesIO(blob) if seekable else io.BufferedReader(OneWay(blob))
    with open_decompressed(raw) as f:
        assert read_all(f) == TAR
    assert not raw.closed  # the caller owns the underlying stream
    raw.close()


@pytest.mark.skipif(zstd_available(), reason="this Python has zstd")
def test_zstd_without_support_says_so() -> None:
    with pytest.raises(ImageFormatError, match="layer sha256:x is zstd-compressed, and this Python has no zstd"):
        open_decompressed(io.BytesIO(ZSTD_FRAME), what="layer sha256:x")


def test_gzip_stream_is_deterministic_and_hashes_both_sides() -> None:
    outs = []
    for _ in range(2):
        dst = io.BytesIO()
        result = gzip_stream(io.BytesIO(TAR), dst)
        outs.append((result, dst.getvalue()))
    (first, data1), (second, data2) = outs
    assert first == second
    assert data1 == data2
    assert str(first.digest) == "sha256:" + hashlib.sha256(data1).hexdigest()
    assert first.size == len(data1)
    assert str(first.diff_id) == "sha256:" + hashlib.sha256(TAR).hexdigest()
    assert first.diff_size == len(TAR)
    assert gzip.decompress(data1) == TAR
    # header: gzip magic, deflate, no flags (no file name), mtime 0
    assert data1[:4] == b"\x1f\x8b\x08\x00"
    assert data1[4:8] == b"\x00\x00\x00\x00"


def test_gzip_stream_of_large_input_streams_in_chunks() -> None:
    data = os.urandom(3 << 20)
    dst = io.BytesIO()
    result = gzip_stream(io.BytesIO(data), dst)
    assert result.diff_size == len(data)
    assert gzip.decompress(dst.getvalue()) == data


def test_gzip_of_a_different_tar_differs() -> None:
    a = gzip_stream(io.BytesIO(TAR), io.BytesIO())
    b = gzip_stream(io.BytesIO(TAR + bytes(512)), io.BytesIO())
    assert a.digest != b.digest


@pytest.mark.parametrize(
    ("blob", "kind"),
    [
        (gzip.compress(TAR)[:-20], "gzip"),  # truncated
        (gzip.compress(TAR)[:200] + b"\x00" * 300 + gzip.compress(TAR)[500:], "gzip"),  # damaged
        (lzma.compress(TAR)[:-30], "xz"),
        (bz2.compress(TAR)[:50] + bytes(100), "bzip2"),
    ],
)
def test_corrupt_data_is_an_image_format_error(blob: bytes, kind: str) -> None:
    with (
        pytest.raises(ImageFormatError, match=f"^layer sha256:y: corrupt {kind} data: "),
        open_decompressed(io.BytesIO(blob), what="layer sha256:y") as f,
    ):
        read_all(f)


def test_closing_the_reader_closes_the_decompressor_only() -> None:
    raw = io.BytesIO(gzip.compress(TAR))
    f = open_decompressed(raw)
    assert f.read(10) == TAR[:10]
    f.close()
    assert f.closed
    assert not raw.closed


def _stored_overhead(size: int) -> int:
    """The bytes deflate's stored blocks add to ``size`` bytes: a 5-byte header per 65,535 bytes or fewer."""
    return 5 * -(-size // 0xFFFF)


def test_gzip_stream_stores_what_does_not_compress() -> None:
    # After the first 1 MiB block fails to shrink, the rest goes out as stored blocks: their headers, the gzip
    # header and trailer, and a final empty block are all the output adds beyond the first block's deflate.
    # (A deflate of the whole adds 0.04 %: 6.7 KB here, where stored blocks add 1.2 KB.)
    data = os.urandom(16 << 20)
    dst = io.BytesIO()
    result = gzip_stream(io.BytesIO(data), dst)
    out = dst.getvalue()
    assert gzip.decompress(out) == data
    rest = len(data) - (1 << 20)
    first_block_bound = (1 << 20) + 1024
    assert result.size == len(out)
    assert len(out) <= 10 + first_block_bound + rest + _stored_overhead(rest) + 5 + 8


def test_gzip_stream_deflates_again_after_a_stored_stretch() -> None:
    # Text, then noise, then the same text: the third part deflates (small) and may refer back across the
    # stored noise, so the dictionary it starts from must be the bytes just before it.
    text = b"".join(b"line %d of a config file that repeats itself\n" % (i % 500) for i in range(60000))
    noise = os.urandom(3 << 20)
    data = text + noise + text + noise[:100000] + text[:300000]
    dst = io.BytesIO()
    result = gzip_stream(io.BytesIO(data), dst)
    assert gzip.decompress(dst.getvalue()) == data
    assert str(result.diff_id) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.size < len(noise) + 100000 + len(text) // 2


class _Trickle(io.RawIOBase):
    """A reader that returns at most ``step`` bytes per read, as a decompressor or a socket may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self._step if size < 0 else min(size, self._step)
        part, self._data = self._data[:n], self._data[n:]
        return bytes(part)


def test_gzip_stream_output_depends_on_the_bytes_not_on_the_reads() -> None:
    data = TAR * 300 + os.urandom(2 << 20) + TAR * 300
    whole = io.BytesIO()
    trickled = io.BytesIO()
    first = gzip_stream(io.BytesIO(data), whole)
    second = gzip_stream(_Trickle(data, 77777), trickled)
    assert first == second
    assert whole.getvalue() == trickled.getvalue()
    assert gzip.decompress(trickled.getvalue()) == data
