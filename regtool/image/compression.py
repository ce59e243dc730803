"""Layer compression: sniff it from the magic bytes, decompress as a stream, gzip deterministically.

Registries and v1 layers carry tars that may be plain, gzip, bzip2, xz or zstd; the media type is not always
truthful (a v1 layer has none), so the engine sniffs the first bytes and so does regtool.

``open_decompressed(f)`` wraps a binary stream in a reader of the decompressed bytes. ``gzip_stream`` compresses
a tar deterministically (no file name, mtime 0, fixed level and OS byte, fixed blocks) so that the same tar always
yields the same blob digest -- what a push of a docker-archive needs to be repeatable. Stretches that do not
compress (already-compressed files) go out as deflate's stored blocks instead of through the match search.

gzip goes through ISA-L (PyPI ``isal``) both ways rather than the standard library's zlib: its deflate is an
order of magnitude faster at a ratio close to zlib's default, and it releases the GIL, so layers compress on
every core at once. Its output is stable for a given ISA-L build, which is why the dependency is pinned: one
regtool version gives one digest for one tar. Reading goes through ISA-L's inflate too, which is about twice as
fast as zlib's on the pull side (docker-archive output, v1 layers).

zstd: Python 3.11's standard library has no zstd; such a layer raises ImageFormatError saying so.

Example::

    with path.open("rb") as raw, open_decompressed(raw) as tar:
        for chunk in iter(lambda: tar.read(1 << 20), b""):
            ...
"""

from __future__ import annotations

import bz2
import enum
import importlib
import io
import lzma
import struct
import zlib
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol, cast

import isal
from isal import igzip, isal_zlib

from regtool.digest import Digest, DigestVerifier
from regtool.errors import ImageFormatError

if TYPE_CHECKING:
    from collections.abc import Callable

    from _typeshed import WriteableBuffer

__all__ = [
    "GZIP_LEVEL",
    "GZIP_VARIANT",
    "ByteSink",
    "Compression",
    "GzipResult",
    "gzip_stream",
    "is_tar",
    "open_decompressed",
    "peek",
    "sniff",
    "zstd_available",
]

# isal's stubs declare these loosely (an untyped class, an error that is "an Exception" value): typed names here.
_IGzipFile = cast("Callable[..., io.BufferedIOBase]", igzip.IGzipFile)
_IsalError = cast("type[Exception]", isal_zlib.error)

# ISA-L's levels run 0-3; 2 is its default, faster than 1 on tars and within a few percent of zlib's level 6.
GZIP_LEVEL = isal_zlib.ISAL_DEFAULT_COMPRESSION
# What decides ``gzip_stream``'s bytes: equal variants give equal digests for equal tars.
GZIP_VARIANT = f"gzip-isal-{isal.__version__}-{GZIP_LEVEL}-stored-blocks"
_CHUNK = 1 << 20
_SNIFF_LEN = 512
# gzip_stream's framing: magic, deflate, no flags, mtime 0, no extra flags, OS "unknown" (ISA-L's own header).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_FINAL_EMPTY_BLOCK = b"\x01\x00\x00\xff\xff"
_STORED_MAX = 0xFFFF
_WINDOW = 1 << 15
# A deflated block this close to its input size sends the next ones stored; a stored block whose head deflates
# below the other ratio turns deflating back on. The trial is 1/32 of a block.
_STORE_AT = 0.98
_DEFLATE_BELOW = 0.95
_TRIAL = 32 << 10


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


def peek(stream: IO[bytes], n: int) -> tuple[bytes, IO[bytes]]:
    """``stream``'s first ``n`` bytes, and a reader that yields them again then the rest (seeking back when it
    can; object-store and socket readers cannot)."""
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
    """A binary reader of ``stream``'s decompressed bytes (the stream's own bytes when it is not compressed).

    Closing the returned reader does not close ``stream``. Corrupt or truncated compressed data raises
    ImageFormatError naming ``what`` while reading; so does zstd on a Python without it, at once.
    """
    head, stream = peek(stream, _SNIFF_LEN)
    kind = sniff(head)
    inner: io.BufferedIOBase | IO[bytes]
    if kind is Compression.NONE:
        return cast("BinaryIO", _Reader(stream, kind, what, close_inner=False))
    if kind is Compression.GZIP:
        inner = _IGzipFile(fileobj=stream, mode="rb")
    elif kind is Compression.BZIP2:
        inner = bz2.BZ2File(stream, mode="rb")
    elif kind is Compression.XZ:
        inner = lzma.LZMAFile(stream, mode="rb")
    else:
        try:
            zstd: Any = importlib.import_module("compression.zstd")
        except ImportError:
            raise ImageFormatError(
                f"{what} is zstd-compressed, and this Python has no zstd support (Python 3.14+ has compression.zstd)"
            ) from None
        inner = zstd.ZstdFile(stream, mode="rb")
    # The decompressors do not close a file object they were given, so closing them leaves ``stream`` open.
    return cast("BinaryIO", _Reader(inner, kind, what, close_inner=True))


class _Reader(io.RawIOBase):
    """Reads ``inner``, turning decompression errors into ImageFormatError; closes ``inner`` only if told to."""

    def __init__(
        self, inner: io.BufferedIOBase | IO[bytes], kind: Compression, what: str, *, close_inner: bool
    ) -> None:
        self._inner = inner
        self._kind = kind
        self._what = what
        self._close_inner = close_inner

    def readable(self) -> bool:
        return True

    def _corrupt(self, exc: BaseException) -> ImageFormatError:
        return ImageFormatError(f"{self._what}: corrupt {self._kind.value} data: {exc}")

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._inner.read(-1 if size is None else size)
        except (EOFError, zlib.error, _IsalError, lzma.LZMAError) as exc:
            raise self._corrupt(exc) from None
        except OSError as exc:
            if exc.errno is not None:  # a real I/O error, not bad data
                raise
            raise self._corrupt(exc) from None

    def readinto(self, b: WriteableBuffer) -> int:
        out = memoryview(b).cast("B")
        data = self.read(len(out))
        out[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed and self._close_inner:
            self._inner.close()
        super().close()


@dataclass(frozen=True, slots=True)
class GzipResult:
    """What ``gzip_stream`` produced: the compressed blob's digest and size, and the tar's (the diff_id)."""

    digest: Digest
    size: int
    diff_id: Digest
    diff_size: int


class ByteSink(Protocol):
    """Where ``gzip_stream`` writes: a file, or anything else taking bytes in order."""

    def write(self, data: bytes, /) -> object: ...


def gzip_stream(src: IO[bytes], dst: ByteSink, *, level: int = GZIP_LEVEL) -> GzipResult:
    """Gzip ``src`` into ``dst`` deterministically, hashing both sides on the way.

    The tar is read in blocks of exactly 1 MiB, whatever sizes ``src`` returns, so the output depends on the
    bytes alone. Each block is deflated by ISA-L and flushed to a byte boundary (``Z_SYNC_FLUSH``: the window
    carries over, so the ratio stays that of one stream). A block that did not shrink (already-compressed
    files in a layer) makes the next ones go out as deflate's stored blocks, a copy instead of a match search
    that finds nothing; a cheap trial deflate of each stored block's head turns deflating back on, with the
    stored bytes as the new stream's dictionary, so a back-reference never skips them. The gzip header is fixed
    (no name, mtime 0, OS byte 255) and the trailer (CRC-32, size) written here. Every call releases the GIL on
    megabyte buffers, so several layers compress in parallel threads.
    """
    plain = DigestVerifier()
    packed = DigestVerifier()

    def emit(data: bytes) -> None:
        if data:
            dst.write(data)
            packed.update(data)

    emit(_GZIP_HEADER)
    crc = 0
    compressor: isal_zlib.Compress | None = _raw_deflater(level, b"")
    window = b""
    while block := _read_block(src):
        plain.update(block)
        crc = isal_zlib.crc32(block, crc)
        if compressor is None and _shrinks(block):
            compressor = _raw_deflater(level, window)
        if compressor is None:
            emit(_stored_blocks(block))
        else:
            out = compressor.compress(block) + compressor.flush(isal_zlib.Z_SYNC_FLUSH)
            emit(out)
            if len(out) >= len(block) * _STORE_AT:
                compressor = None
        window = block[-_WINDOW:] if len(block) >= _WINDOW else (window + block)[-_WINDOW:]
    emit(compressor.flush(isal_zlib.Z_FINISH) if compressor is not None else _FINAL_EMPTY_BLOCK)
    emit(struct.pack("<II", crc & 0xFFFFFFFF, plain.size & 0xFFFFFFFF))
    return GzipResult(packed.digest(), packed.size, plain.digest(), plain.size)


def _read_block(src: IO[bytes]) -> bytes:
    """The next ``_CHUNK`` bytes of ``src`` (fewer only at its end)."""
    block = src.read(_CHUNK)
    if not block or len(block) == _CHUNK:
        return block
    parts = [block]
    left = _CHUNK - len(block)
    while left and (more := src.read(left)):
        parts.append(more)
        left -= len(more)
    return b"".join(parts)


def _raw_deflater(level: int, window: bytes) -> isal_zlib.Compress:
    """A raw deflate stream (the gzip framing is written by ``gzip_stream``), primed with the bytes before it."""
    if window:
        return isal_zlib.compressobj(level, isal_zlib.DEFLATED, -isal_zlib.MAX_WBITS, zdict=window)
    return isal_zlib.compressobj(level, isal_zlib.DEFLATED, -isal_zlib.MAX_WBITS)


def _shrinks(block: bytes) -> bool:
    """Whether deflating ``block`` looks worth it: a fast trial over its head."""
    head = block[:_TRIAL]
    return len(isal_zlib.compress(head, 1, -isal_zlib.MAX_WBITS)) < len(head) * _DEFLATE_BELOW


def _stored_blocks(block: bytes) -> bytes:
    """``block`` as deflate stored blocks (none final): a 5-byte header before each 65,535 bytes at most."""
    view = memoryview(block)
    parts: list[bytes | memoryview] = []
    for start in range(0, len(view), _STORED_MAX):
        part = view[start : start + _STORED_MAX]
        parts += (struct.pack("<BHH", 0, len(part), len(part) ^ 0xFFFF), part)
    return b"".join(parts)
