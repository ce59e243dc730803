"""Byte ranges on the wire, both directions: ``Range`` / ``Content-Range`` of blob GETs (RFC 9110 §14) and the
chunk ranges of uploads (the distribution spec's ``Content-Range: <start>-<end>`` on PATCH and ``Range:
0-<end>`` in upload status answers, inclusive, without the ``bytes`` unit).

Pure functions over header values; what a bad value means (a 416, a protocol error) is the caller's to say.

>>> range_request(100), range_request(100, 199)
('bytes=100-', 'bytes=100-199')
>>> parse_range_request("bytes=-10", 50), parse_range_request("bytes=5-", 50), parse_range_request("bytes=9-3", 50)
((40, 49), (5, 49), None)
>>> content_range(0, 9, 50), parse_content_range("bytes 0-9/50"), parse_content_range("bytes 0-9/*")
('bytes 0-9/50', (0, 9, 50), (0, 9, None))
>>> chunk_range(0, 1000), parse_chunk_range("0-999"), parse_chunk_range("bytes=0-999"), parse_chunk_range("9-1")
('0-999', (0, 999), (0, 999), None)
>>> upload_progress(100), parse_upload_progress("0-99"), parse_upload_progress("0-0"), parse_upload_progress("x")
('0-99', 100, 0, None)
"""

from __future__ import annotations

import re

__all__ = [
    "chunk_range",
    "content_range",
    "parse_chunk_range",
    "parse_content_range",
    "parse_range_request",
    "parse_upload_progress",
    "range_request",
    "unsatisfied_range",
    "upload_progress",
]

# ASCII digits, at most 19 of them (any byte offset fits): ``\d`` takes every script's digits, and ``int`` refuses a
# string of more than 4300 digits, which would otherwise fail a request from the network with a ValueError.
_RANGE_REQUEST_RE = re.compile(r"^bytes=([0-9]{0,19})-([0-9]{0,19})$")
_CONTENT_RANGE_RE = re.compile(r"^bytes\s+([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)$", re.IGNORECASE)
_UPLOAD_PROGRESS_RE = re.compile(r"^(?:bytes=)?0-([0-9]{1,19})$")
_CHUNK_RANGE_RE = re.compile(r"^(?:bytes[= ])?([0-9]{1,19})-([0-9]{1,19})(?:/[0-9]{1,19}|/\*)?$")


def range_request(first: int, last: int | None = None) -> str:
    """A ``Range`` header asking for bytes ``first``..``last`` (inclusive; to the end without ``last``)."""
    return f"bytes={first}-" if last is None else f"bytes={first}-{last}"


def parse_range_request(value: str, size: int) -> tuple[int, int] | None:
    """The single range a ``Range`` header asks of ``size`` bytes, as (first, last) inclusive; None when it is
    malformed, has several parts, or cannot be satisfied."""
    match = _RANGE_REQUEST_RE.match(value.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text or int(last_text) == 0 or size == 0:
            return None
        return max(size - int(last_text), 0), size - 1
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    if first >= size or last < first:
        return None
    return first, last


def content_range(first: int, last: int, size: int) -> str:
    """The ``Content-Range`` of a 206 carrying bytes ``first``..``last`` of ``size``."""
    return f"bytes {first}-{last}/{size}"


def unsatisfied_range(size: int) -> str:
    """The ``Content-Range`` of a 416: the size, no range."""
    return f"bytes */{size}"


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes <first>-<last>/<total|*>`` as (first, last, total or None); None when absent or malformed."""
    if value is None:
        return None
    match = _CONTENT_RANGE_RE.match(value.strip())
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    if last < first:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    if total is not None and last >= total:
        return None
    return first, last, total


def chunk_range(offset: int, length: int) -> str:
    """The ``Content-Range`` of an upload chunk of ``length`` bytes at ``offset``."""
    return f"{offset}-{offset + length - 1}"


def parse_chunk_range(value: str) -> tuple[int, int] | None:
    """An upload chunk's range (``<start>-<end>``; a ``bytes`` unit and a ``/total`` are tolerated) as
    (start, end) inclusive; None when malformed."""
    match = _CHUNK_RANGE_RE.match(value.strip())
    if match is None or int(match.group(2)) < int(match.group(1)):
        return None
    return int(match.group(1)), int(match.group(2))


def upload_progress(size: int) -> str:
    """The ``Range`` of an upload status answer: ``0-<last byte>`` (distribution writes ``0-0`` when empty)."""
    return f"0-{max(size - 1, 0)}"


def parse_upload_progress(value: str | None) -> int | None:
    """Bytes an upload session holds, from its ``Range: 0-<last>`` header; None when absent or malformed.

    ``0-0`` is read as 0 bytes: distribution (and regtool serve) write it for an empty session as well as for a
    one-byte one, and sending that byte again costs nothing, while skipping it would corrupt the blob.
    """
    if value is None:
        return None
    match = _UPLOAD_PROGRESS_RE.match(value.strip())
    if match is None:
        return None
    last = int(match.group(1))
    return 0 if last == 0 else last + 1
