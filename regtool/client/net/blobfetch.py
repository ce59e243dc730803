"""Blob bodies moved in worker threads: one thread per transfer, straight through a reused 1 MiB buffer.

Why not the event loop: an asyncio pull of large blobs spends its time in per-chunk overhead on one thread
(a protocol parser's pieces, a chunk per await, a hand-off per chunk), several times what threads doing
``readinto`` + sha256 + write take, since those release the GIL for the heavy parts (BENCHMARKS.md has the
figures, measured when httpx's own transport streamed the bodies). So the API
calls (manifests, auth, opening upload sessions) go through the async httpx client, and only blob bodies
(downloads and uploads) come through here; both over the Client's one ``connections.ConnectionPool``.

``BlobFetcher.receive`` is the download side: the GET itself goes through httpx like every other request (the
auth flow, redirects to storage with Authorization dropped across origins, retried statuses, error mapping), its
body left on the pooled connection (``RegistryAPI.send(keep_body=True)``); ``receive`` then reads that body in a
worker thread into the caller's sink. A body cut short raises ``BodyBroken`` with the bytes that arrived.

``BlobFetcher.body_sender`` is the upload side: a PUT/PATCH whose body is a slice of a local file, sent from the
reused buffer, where ``inspect`` sees every piece before it is sent (a push hashes its source that way; an
exception from ``inspect`` stops the body before that piece, so the request never completes); ``sendfile(2)``
on plain HTTP when nothing inspects. 307/308 re-send it; the final response (any status) is returned for the
caller to judge. Socket errors stay ``OSError``.

``BlobFetcher.relay_sender`` joins the two for a copy between registries: the body of a GET from one registry,
read by the thread that writes it into a PUT/PATCH to the other (``ResponseReader``: the source's failures are
``BodyBroken``, never the sending connection's), so a relayed blob costs no event-loop hand-off per piece.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO, Protocol, TypeVar

from regtool.client.net.connections import BodySender, ConnectionPool, Exchange
from regtool.client.tasks import first_error, task_group

__all__ = [
    "BUFFER_SIZE",
    "BlobFetcher",
    "BodyBroken",
    "FetchCancelled",
    "ResponseHead",
    "ResponseReader",
    "SourceTruncated",
    "run_reported",
]

T = TypeVar("T")

BUFFER_SIZE = 1 << 20
# Cancellation (Ctrl-C) is seen between slices; 1 MiB keeps that prompt on a slow link too.
_SENDFILE_SLICE = 1 << 20
# How often the event loop reports the bytes a transfer's thread counted.
_TICK = 0.1


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """The final response's status, headers (lowercased names) and URL, as ``begin`` sees them."""

    status: int
    headers: dict[str, str]
    url: str


class BodyBroken(Exception):
    """The connection ended before the body did; ``received`` bytes reached the sink."""

    def __init__(self, received: int, reason: str) -> None:
        super().__init__(reason)
        self.received = received
        self.reason = reason


class FetchCancelled(Exception):
    """The caller asked the transfer to stop."""


class SourceTruncated(Exception):
    """A local file to upload ended before the length it was supposed to have."""


class _Body(Protocol):
    """What ``_body`` reads: an ``http.client`` response, or a pooled ``Exchange``."""

    @property
    def length(self) -> int | None: ...

    def readinto(self, buffer: memoryview) -> int: ...


class BlobFetcher:
    """Thread-side GETs of blob bodies with kept-alive connections; one per Client, shared by its threads."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def body_sender(
        self,
        open_body: Callable[[], BinaryIO],
        offset: int,
        length: int,
        *,
        on_bytes: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
        inspect: Callable[[int, memoryview], None] | None = None,
    ) -> BodySender:
        """What sends ``length`` bytes of a file from ``offset`` as a request's body, on the request's connection
        in its worker thread (``connections.BODY_SENDER``); it opens the file anew for every attempt.

        Through a reused 1 MiB buffer (``readinto`` + ``send``: flat memory, GIL released), where ``inspect(file
        offset, piece)`` sees every piece before it is sent and may raise to stop the body there; with nothing
        to inspect, plain HTTP and a real file, by ``sendfile(2)``. A file shorter than ``length`` raises
        SourceTruncated, ``cancel`` FetchCancelled.
        """

        def send(conn: http.client.HTTPConnection) -> None:
            buffer = bytearray(min(BUFFER_SIZE, max(length, 1)))
            view = memoryview(buffer)
            with open_body() as body:
                sock = conn.sock
                zero_copy = inspect is None and not isinstance(sock, ssl.SSLSocket) and _has_fileno(body)
                if sock is not None and zero_copy:
                    # sendfile(2) in slices, for progress and cancellation.
                    done = 0
                    while done < length:
                        if cancel is not None and cancel.is_set():
                            raise FetchCancelled("cancelled")
                        sent = sock.sendfile(body, offset + done, min(_SENDFILE_SLICE, length - done))
                        if not sent:
                            raise SourceTruncated(f"the source ended {length - done} bytes before the expected end")
                        done += sent
                        if on_bytes is not None:
                            on_bytes(sent)
                    return
                if offset:
                    body.seek(offset)
                _pump(conn, body.readinto, view, offset, length, on_bytes, cancel, inspect)  # type: ignore[attr-defined]

        return send

    def relay_sender(
        self,
        source: ResponseReader,
        offset: int,
        length: int,
        *,
        on_bytes: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
        inspect: Callable[[int, memoryview], None] | None = None,
    ) -> BodySender:
        """What sends the next ``length`` bytes of another response's body (``source``, a GET from another
        registry) as a request's body: read from that connection and written to this one by the same worker
        thread, through one reused buffer. ``offset`` is where the bytes sit in the blob (what ``inspect`` is
        told). The source cannot be read twice, so a second attempt (an auth retry, a redirect) raises BodyBroken
        for the caller to open the source again."""
        attempts = [0]

        def send(conn: http.client.HTTPConnection) -> None:
            attempts[0] += 1
            if attempts[0] > 1:
                raise BodyBroken(0, "a relayed body cannot be sent a second time")
            view = memoryview(bytearray(min(BUFFER_SIZE, max(length, 1))))
            _pump(conn, source.readinto, view, offset, length, on_bytes, cancel, inspect)

        return send

    def receive(
        self,
        exchange: Exchange,
        sink: Callable[[memoryview], None],
        *,
        on_bytes: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> int:
        """Read the body of a response that came through the pool (``connections.exchange_of``) into ``sink``,
        straight from the connection through a reused buffer; the number of body bytes.

        The request itself went through httpx like every other one (auth, redirects, retried statuses); only
        the body is moved here. A body cut short raises ``BodyBroken``, ``cancel`` raises ``FetchCancelled``;
        either way the connection is dropped.
        """
        try:
            if exchange.complete:  # a small body, read with the head
                sink(memoryview(exchange.body))
                if on_bytes is not None:
                    on_bytes(len(exchange.body))
                return len(exchange.body)
            return self._body(exchange, sink, on_bytes, cancel)
        except BaseException:
            exchange.abandon()
            raise

    @staticmethod
    def _body(
        response: _Body,
        sink: Callable[[memoryview], None],
        on_bytes: Callable[[int], None] | None,
        cancel: threading.Event | None,
    ) -> int:
        reader = ResponseReader(response)
        view = memoryview(bytearray(BUFFER_SIZE))
        while True:
            if cancel is not None and cancel.is_set():
                raise FetchCancelled("cancelled")
            n = reader.readinto(view)
            if not n:
                return reader.received
            sink(view[:n])
            if on_bytes is not None:
                on_bytes(n)


class ResponseReader:
    """A response's body read straight from its connection, its failures told apart from anything else's: a
    connection that breaks, or ends before the body does, raises BodyBroken with the bytes that arrived (so a relay
    never takes the source's failure for the sending connection's). At the body's end the connection is given back
    at once."""

    def __init__(self, response: _Body) -> None:
        self._response = response
        self.received = 0

    def readinto(self, buffer: memoryview) -> int:
        try:
            n = self._response.readinto(buffer)
        except http.client.IncompleteRead as exc:
            raise BodyBroken(self.received + len(exc.partial), "connection closed before the end of the body") from None
        except (OSError, http.client.HTTPException) as exc:
            raise BodyBroken(self.received, str(exc) or type(exc).__name__) from None
        if not n:
            # http.client returns 0 at a premature EOF instead of raising; ``length`` is what was still due.
            if self._response.length:
                raise BodyBroken(
                    self.received, f"connection closed {self._response.length} bytes before the end of the body"
                )
            return 0
        self.received += n
        if self._response.length == 0 and len(buffer):
            # The last byte is in: one more (empty) read hands a pooled connection back without waiting for a
            # reader that stops at the length it wanted.
            self._response.readinto(buffer[:0])
        return n


def _pump(
    conn: http.client.HTTPConnection,
    readinto: Callable[[memoryview], int],
    view: memoryview,
    offset: int,
    length: int,
    on_bytes: Callable[[int], None] | None,
    cancel: threading.Event | None,
    inspect: Callable[[int, memoryview], None] | None,
) -> None:
    """Send ``length`` bytes read by ``readinto`` through ``view``, each piece shown to ``inspect`` first."""
    remaining = length
    while remaining:
        if cancel is not None and cancel.is_set():
            raise FetchCancelled("cancelled")
        n = readinto(view[: min(len(view), remaining)])
        if not n:
            raise SourceTruncated(f"the source ended {remaining} bytes before the expected end")
        if inspect is not None:
            inspect(offset + length - remaining, view[:n])
        conn.send(view[:n])
        remaining -= n
        if on_bytes is not None:
            on_bytes(n)


def _has_fileno(stream: BinaryIO) -> bool:
    try:
        stream.fileno()
    except (OSError, AttributeError, ValueError):
        return False
    return True


async def run_reported(
    work: Callable[[], Awaitable[T]],
    moved: Callable[[], int],
    advance: Callable[[int], None],
    cancel: threading.Event,
) -> T:
    """Await ``work`` (a transfer whose bytes a worker thread moves and counts in ``moved()``) while the event
    loop reports them: ``advance`` is told what ``moved()`` grew by, ten times a second at most and once at the
    end, so progress costs the transfer no hand-off per piece. ``cancel`` is set as soon as the work ends or is
    cancelled, for the thread's loop to see. The work's error comes out alone, not in a group; FetchCancelled as
    the event loop's own cancellation."""
    reported = moved()
    outcome: list[T] = []

    async def ticker() -> None:
        nonlocal reported
        try:
            while True:
                await asyncio.sleep(_TICK)
                now = moved()
                if now != reported:
                    advance(now - reported)
                    reported = now
        finally:
            cancel.set()

    async def run(ticking: asyncio.Task[None]) -> None:
        try:
            outcome.append(await work())
        finally:
            ticking.cancel()

    try:
        async with task_group() as tg:
            tg.create_task(run(tg.create_task(ticker())))
    except BaseExceptionGroup as group:
        error = first_error(group)
        if isinstance(error, FetchCancelled):
            raise asyncio.CancelledError() from None
        raise error from None
    now = moved()
    if now != reported:
        advance(now - reported)
    return outcome[0]
