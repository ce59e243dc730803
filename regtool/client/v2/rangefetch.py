"""One large blob over several connections at once: the rest of the blob is cut into ``parts`` byte ranges,
fetched concurrently with ``Range`` requests, and verified as one blob.

Why it can help: a registry (or the CDN behind it) that caps each connection's rate, or a long fat network
path where one TCP stream never fills the pipe. Why it is off below ``SplitPolicy.threshold``: on a fast,
close registry one connection already runs at disk/CPU speed and the split costs a local copy (see
BENCHMARKS.md for the measurements).

How, keeping the blob store's guarantees:

- the segment boundaries are fixed by the blob size and ``parts`` (``plan_segments``), so a later run finds the
  same part files again;
- the first remaining segment streams straight into the BlobWriter (which hashes as it writes); every other
  segment goes to a part file in the staging area, ``<partial name>.range-<start>-<end>``;
- once all are complete, the part files are appended to the writer in order (hashed on the way) and removed;
  the caller commits, so the digest and size are checked over the whole blob;
- a cut connection resumes its own segment (``Range`` from the byte reached), under the retry policy; a server
  that answers 200 instead of 206 raises ``RangeNotSupported`` before anything was written, and the caller
  falls back to one stream.

Each range request takes a slot of the per-registry connection cap (``RegistryAPI.host_slot``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from regtool.client.net.blobfetch import BlobFetcher, BodyBroken, FetchCancelled, run_reported
from regtool.client.net.connections import exchange_of
from regtool.client.net.retry import RetryBudget
from regtool.client.net.transport import redact_url
from regtool.client.progress import Progress
from regtool.client.tasks import task_group
from regtool.client.threads import in_thread, shielded
from regtool.client.v2.api import RegistryAPI
from regtool.client.v2.splitpolicy import DEFAULT_PARTS, DEFAULT_THRESHOLD, SplitPolicy
from regtool.errors import IntegrityError, ProtocolError, TransportError
from regtool.image.blobstore import BlobWriter
from regtool.manifest import Descriptor
from regtool.protocol.ranges import parse_content_range, range_request

__all__ = [
    "DEFAULT_PARTS",
    "DEFAULT_THRESHOLD",
    "RangeNotSupported",
    "Segment",
    "SplitDownload",
    "SplitPolicy",
    "plan_segments",
]

_COPY_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Segment:
    """Bytes ``start`` (inclusive) to ``end`` (exclusive) of the blob."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_segments(size: int, offset: int, parts: int) -> list[Segment]:
    """The segments still to fetch of a ``size``-byte blob whose first ``offset`` bytes are held.

    Boundaries depend only on ``size`` and ``parts``; the segment holding ``offset`` starts there.

    >>> plan_segments(100, 30, 4)
    [Segment(start=30, end=50), Segment(start=50, end=75), Segment(start=75, end=100)]
    """
    bounds = [size * i // parts for i in range(parts + 1)]
    segments = []
    for start, end in itertools.pairwise(bounds):
        if end > offset and end > start:
            segments.append(Segment(max(start, offset), end))
    return segments


class RangeNotSupported(Exception):
    """The registry answered a Range request with the whole blob (200): fetch it in one stream instead."""


class _Part:
    """One segment in flight: where its bytes go and how many arrived."""

    def __init__(self, segment: Segment, writer: BlobWriter | None, path: Path | None) -> None:
        self.segment = segment
        self.writer = writer
        self.path = path
        self.lock = threading.Lock()
        self.received = 0

    def held(self) -> int:
        if self.writer is not None:
            return self.writer.offset - self.segment.start
        assert self.path is not None
        try:
            return min(self.path.stat().st_size, self.segment.length)
        except FileNotFoundError:
            return 0


class SplitDownload:
    """Fetch the rest of ``desc`` into ``writer`` over several Range connections; ``run`` returns the bytes
    transferred. The caller commits the writer (and aborts it on error)."""

    def __init__(
        self,
        api: RegistryAPI,
        fetcher: BlobFetcher,
        url: str,
        desc: Descriptor,
        writer: BlobWriter,
        *,
        parts: int,
        progress: Progress,
        key: str,
    ) -> None:
        self.api = api
        self.fetcher = fetcher
        self.url = url
        self.desc = desc
        self.writer = writer
        self.progress = progress
        self.key = key
        segments = plan_segments(desc.size, writer.offset, parts)
        base = writer.partial_path
        self.parts = [
            _Part(seg, writer if i == 0 else None, None if i == 0 else base.with_name(f"{base.name}.range-{seg.start}"))
            for i, seg in enumerate(segments)
        ]

    async def run(self) -> int:
        cancel = threading.Event()
        already = sum(p.held() for p in self.parts[1:])
        if already:
            self.progress.advance(self.key, already)

        async def fetch_all() -> None:
            async with task_group() as parts:
                for part in self.parts:
                    parts.create_task(self._fetch_part(part, cancel))

        def advance(n: int) -> None:
            self.progress.advance(self.key, n)

        try:
            await run_reported(fetch_all, lambda: sum(p.received for p in self.parts), advance, cancel)
        except (RangeNotSupported, IntegrityError, ProtocolError):
            await in_thread(self.discard)
            raise
        try:
            await in_thread(self._merge)
        except BaseException:
            await in_thread(self.discard)
            raise
        return sum(p.received for p in self.parts)

    def discard(self) -> None:
        """Remove the part files (their content cannot be used)."""
        for part in self.parts[1:]:
            assert part.path is not None
            with contextlib.suppress(OSError):
                part.path.unlink()

    def _merge(self) -> None:
        """Append the part files to the writer in order (hashing them there), then remove them."""
        for part in self.parts[1:]:
            assert part.path is not None
            if self.writer.offset != part.segment.start:
                raise IntegrityError(
                    f"blob {self.desc.digest}: segment at {part.segment.start} follows {self.writer.offset} bytes"
                )
            with open(part.path, "rb") as f:
                while chunk := f.read(_COPY_CHUNK):
                    self.writer.write(chunk)
            part.path.unlink()

    async def _fetch_part(self, part: _Part, cancel: threading.Event) -> None:
        # One budget for the part: its GETs' statuses and transport errors (retried in ``RegistryAPI.send``)
        # and its bodies cut short (retried here, from where they stopped).
        budget = RetryBudget(self.api.retry)
        while True:
            held = await in_thread(part.held)
            if held >= part.segment.length:
                return
            start = part.segment.start + held
            last = part.segment.end - 1
            try:
                async with self.api.host_slot(self.url):
                    response = await self.api.send(
                        "GET",
                        self.url,
                        what=f"blob {self.desc.digest} (bytes {start}-{last})",
                        headers={"Range": range_request(start, last)},
                        expect=(200, 206),
                        stream=True,
                        budget=budget,
                        keep_body=True,
                    )
                    exchange = exchange_of(response)
                    try:
                        await in_thread(
                            self._receive_range,
                            response,
                            part,
                            start,
                            cancel,
                            on_cancel=exchange.interrupt if exchange is not None else None,
                        )
                    finally:
                        await shielded(response.aclose())
                continue
            except FetchCancelled:
                raise asyncio.CancelledError() from None
            except BodyBroken as exc:
                reason = exc.reason
            if budget.exhausted:
                raise TransportError(
                    f"blob {self.desc.digest}: range from byte {start} cut short from {redact_url(self.url)}: "
                    f"{reason}; the bytes received are kept, run the command again to resume"
                )
            attempt = budget.take()
            delay = self.api.retry.backoff(attempt)
            self.api.retry_log.record(
                f"GET {redact_url(self.url)} (range)",
                attempt=attempt + 1,
                delay=delay,
                reason=reason,
                of=budget.attempts,
            )
            await asyncio.sleep(delay)

    def _receive_range(self, response: httpx.Response, part: _Part, start: int, cancel: threading.Event) -> None:
        """In a worker thread: check the answer to a Range GET, then move its body into the part's writer or file."""
        last = part.segment.end - 1
        url = redact_url(response.url)
        if response.status_code == 200:
            raise RangeNotSupported(url)
        value = response.headers.get("content-range")
        got = parse_content_range(value)
        if got is None or got[0] != start or got[1] != last:
            raise ProtocolError(
                f"blob {self.desc.digest}: asked for bytes {start}-{last}, got HTTP {response.status_code} "
                f"Content-Range {value!r} from {url}"
            )
        exchange = exchange_of(response)
        if exchange is None:
            raise ProtocolError(f"blob {self.desc.digest}: the response did not come over regtool's connections")
        handle: BinaryIO | None = None
        if part.writer is None:
            assert part.path is not None
            handle = open(part.path, "ab")
        try:
            sink = _Sink(part, handle, part.segment.end - start, self.desc)
            self.fetcher.receive(exchange, sink.write, cancel=cancel)
        finally:
            if handle is not None:
                handle.close()


class _Sink:
    def __init__(self, part: _Part, handle: BinaryIO | None, room: int, desc: Descriptor) -> None:
        self._part = part
        self._handle = handle
        self._room = room
        self._desc = desc

    def write(self, data: memoryview) -> None:
        if len(data) > self._room:
            raise IntegrityError(f"blob {self._desc.digest}: a range response carried more bytes than asked for")
        self._room -= len(data)
        if self._part.writer is not None:
            self._part.writer.write(data)
        else:
            assert self._handle is not None
            self._handle.write(data)
        self._part.received += len(data)
