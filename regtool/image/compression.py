"""Layer compression: sniff it from the magic bytes, decompress as a stream, gzip deterministically.

Registries and v1 layers carry tars that may be plain, gzip, bzip2, xz or zstd; the media type is not always
truthful (a v1 layer has none), so the engine sniffs the first bytes and so does regtool.

``open_decompressed(f)`` wraps a binary stream in a reader of the decompressed bytes. ``gzip_stream`` compresses
a tar deterministically (no file name, mtime 0, fixed level and OS byte) so that the same tar always yields the
same blob digest -- what a push of a docker-archive needs to be repeatable. The output is stable for a given
zlib build; a different zlib may produce different (still valid) bytes.

zstd: Python 3.11's standard library has no zstd; such a layer raises ImageFormatError saying so.

Example::

    with path.open("rb") as raw, open_decompressed(raw) as tar:
        for chunk in iter(lambda: tar.read(1 << 20), b""):
            ...
"""

from __future__ import annotations

import bz2
import enum
import gzip
import importlib
import io
import lzma
import zlib
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from regtool.digest import Digest, DigestVerifier
from regtool.errors import ImageFormatError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "GZIP_LEVEL",
    "Compression",
    "GzipResult",
    "gzip_stream",
    "is_tar",
    "open_decompressed",
    "sniff",
    "zstd_available",
]

GZIP_LEVEL = 6
_CHUNK = 1 << 20
_SNIFF_LEN = 512


class Compression(enum.Enum):
    """What a layer blob is compressed with (NONE: no known compression magic, e.g. a plain tar)."""

    NONE = "none"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"


_MAGIC: tuple[tuple[bytes, Compression], ...] = (
    (b"\x1f\x8b\x08", Compression.GZIP),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
)


def sniff(head: bytes) -> Compression:
    """The compression whose magic ``head`` (the first bytes of a blob) starts with; NONE otherwise."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return Compression.NONE


def is_tar(head: bytes) -> bool:
    """True when ``head`` (at least 512 bytes of an uncompressed stream) looks like a tar header."""
    return (len(head) >= 263 and head[257:262] == b"ustar") or head[:512] == bytes(512)


def zstd_available() -> bool:
    """True when this Python can decompress zstd (``compression.zstd``, Python 3.14+)."""
    try:
        importlib.import_module("compression.zstd")
    except ImportError:
        return False
    return True


class _Prefixed(io.RawIOBase):
    """A reader that yields ``prefix`` and then the rest of ``stream`` (to sniff a non-seekable stream)."""

    def __init__(self, prefix: bytes, stream: IO[bytes]) -> None:
        self._prefix = memoryview(prefix)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        out = memoryview(b).cast("B")
        if self._prefix:
            n = min(len(out), len(self._prefix))
            out[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._stream.read(len(out))
        out[: len(data)] = data
        return len(data)


def _peek(stream: IO[bytes], n: int) -> tuple[bytes, IO[bytes]]:
    head = stream.read(n)
    try:
        seekable = stream.seekable()
    except (AttributeError, ValueError):
        seekable = False
    if seekable:
        stream.seek(-len(head), io.SEEK_CUR)
        return head, stream
    return head, cast("BinaryIO", io.BufferedReader(_Prefixed(head, stream), _CHUNK))


def open_decompressed(stream: IO[bytes], *, what: str = "layer") -> BinaryIO:
    """A binary reader of ``stream``'s decompressed bytes (the stream itself when it is not compressed).

    Closing the returned reader does not close ``stream``. ImageFormatError for zstd on a Python without it.
    """
    head, stream = _peek(stream, _SNIFF_LEN)
    kind = sniff(head)
    if kind is Compression.NONE:
        return cast("BinaryIO", _Uncloseable(stream))
    if kind is Compression.GZIP:
        return cast("BinaryIO", gzip.GzipFile(fileobj=stream, mode="rb"))
    if kind is Compression.BZIP2:
        return cast("BinaryIO", bz2.BZ2File(stream, mode="rb"))
    if kind is Compression.XZ:
        return cast("BinaryIO", lzma.LZMAFile(stream, mode="rb"))
    try:
        zstd: Any = importlib.import_module("compression.zstd")
    except ImportError:
        raise ImageFormatError(
            f"{what} is zstd-compressed, and this Python has no zstd support (Python 3.14+ has compression.zstd)"
        ) from None
    return cast("BinaryIO", zstd.ZstdFile(stream, mode="rb"))


class _Uncloseable(io.RawIOBase):
    """Pass-through reader whose close leaves the underlying stream open."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        out = memoryview(b).cast("B")
        data = self._stream.read(len(out))
        out[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)


@dataclass(frozen=True, slots=True)
class GzipResult:
    """What ``gzip_stream`` produced: the compressed blob's digest and size, and the tar's (the diff_id)."""

    digest: Digest
    size: int
    diff_id: Digest
    diff_size: int


def gzip_stream(src: IO[bytes], dst: IO[bytes], *, level: int = GZIP_LEVEL) -> GzipResult:
    """Gzip ``src`` into ``dst`` deterministically, hashing both sides on the way.

    The gzip header is fixed (zlib's: no name, mtime 0, OS byte of the zlib build), so equal input gives equal
    output on the same zlib.
    """
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY)
    plain = DigestVerifier()
    packed = DigestVerifier()

    def emit(data: bytes) -> None:
        if data:
            dst.write(data)
            packed.update(data)

    while chunk := src.read(_CHUNK):
        plain.update(chunk)
        emit(compressor.compress(chunk))
    emit(compressor.flush())
    return GzipResult(packed.digest(), packed.size, plain.digest(), plain.size)
