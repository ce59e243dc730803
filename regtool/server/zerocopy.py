"""ASGI's zero-copy send extension (``http.response.zerocopysend``): a file range sent with ``sendfile(2)``.

A blob GET then leaves the page cache for the socket inside the kernel, as distribution's does, instead of being
read into Python 1 MiB at a time and written back: that copy through user space was most of serve's CPU per byte
sent, and on 2 CPUs shared with the client, CPU is wall time (BENCHMARKS.md, "serve").

uvicorn 0.54 implements no zero-copy send and uvloop's ``loop.sendfile`` raises NotImplementedError, so
``uvicorn_protocol.py`` advertises the extension on plain-HTTP connections and calls ``send_file`` here:

- the response head uvicorn wrote must leave the transport's buffer first (uvloop queues writes until the end of
  the loop iteration), so the body cannot overtake it;
- one worker thread per transfer then runs a non-blocking ``sendfile`` / ``poll`` loop on *duplicates* of the
  socket's and the file's descriptors: a descriptor that uvicorn or the app closes meanwhile can never be reused
  under the thread and make it send another file's bytes or write to another client.

The app (``streaming.StreamResponse``) falls back to chunked sends when the extension is absent: under TLS (the
kernel cannot encrypt), for in-memory storage, or under another server.

A file still being written (a pull-through cache's blob arriving from upstream) is sent in one message too: its
``FOLLOW`` callable, run in the sending thread, says how far the file may be read and waits for its writer, so
the transfer follows the writer without a hop through the event loop for every piece that lands.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, Protocol

import anyio
from anyio import to_thread

__all__ = ["FOLLOW", "SENT", "ZEROCOPY", "Follow", "send_file", "zerocopy_available"]

ZEROCOPY = "http.response.zerocopysend"
# Key the server adds to a zero-copy message once it is done: the bytes that actually left (fewer when the client went
# away), for the access log in middleware.py. Not part of ASGI; other servers leave it out.
SENT = "regtool.sent"
# Key of a zero-copy message whose file is still being written: a ``Follow``. Not part of ASGI either.
FOLLOW = "regtool.follow"
_MAX_PER_CALL = 16 * 1024 * 1024  # bytes one sendfile(2) call may move; the socket's free space limits it anyway
_MAX_SENDS = 256  # concurrent zero-copy transfers per server; more wait for a free thread
_SEND_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)
_POLL_MS = 100  # how often a transfer waiting on a full socket checks whether it was abandoned
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class Transport(Protocol):
    """The part of an asyncio (or uvloop) transport that ``send_file`` uses."""

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...


Follow = Callable[[int, float], int]
"""``follow(offset, timeout)``: how far the file may be read, waiting up to ``timeout`` seconds while it ends at
``offset``; called in the sending thread, it may raise to stop the transfer (the exception reaches the sender)."""


def zerocopy_available(scope: Mapping[str, Any]) -> bool:
    """Whether the server offers zero-copy sends for this request."""
    return ZEROCOPY in (scope.get("extensions") or {})


async def send_file(
    transport: Transport, file: BinaryIO, offset: int, count: int, *, follow: Follow | None = None
) -> int:
    """Send ``count`` bytes of ``file`` from ``offset`` on ``transport``'s socket, after what it has buffered.

    Returns the bytes sent: fewer than ``count`` when the client went away or the transport was closing. Raises
    OSError when the file ends early. With ``follow``, the file is still being written: the transfer sends what
    ``follow`` says is there and waits on it for the rest.
    """
    await _flushed(transport)
    sock = transport.get_extra_info("socket")
    if sock is None or transport.is_closing():
        return 0
    out_fd = os.dup(sock.fileno())
    try:
        in_fd = os.dup(file.fileno())
    except OSError:
        os.close(out_fd)
        raise
    progress = _Progress()
    try:
        # abandon_on_cancel: a cancelled request (server shutdown) need not wait for the thread, which sees ``stop``
        # within _POLL_MS and closes its descriptors itself.
        await to_thread.run_sync(
            _send_all, out_fd, in_fd, offset, count, progress, follow, abandon_on_cancel=True, limiter=_send_limiter()
        )
    except _CLIENT_GONE:
        pass
    finally:
        progress.stop.set()
    return progress.sent


class _Progress:
    """Shared with the sending thread: what it has sent, and whether the request still wants the rest."""

    def __init__(self) -> None:
        self.sent = 0
        self.stop = threading.Event()


def _send_limiter() -> anyio.CapacityLimiter:
    # A transfer holds its thread for as long as the client takes to read (and a followed file's writer to write).
    # On anyio's default limiter (40 threads, shared with every file open, read and upload hash of the server) 40
    # slow downloads would stall all other requests; sends get their own, larger pool instead, one per event loop.
    loop = asyncio.get_running_loop()
    limiter = _SEND_LIMITERS.get(loop)
    if limiter is None:
        limiter = _SEND_LIMITERS[loop] = anyio.CapacityLimiter(_MAX_SENDS)
    return limiter


async def _flushed(transport: Transport) -> None:
    # uvloop writes queued data at the end of the loop iteration: a fresh response head is out after one.
    delay = 0.0
    while transport.get_write_buffer_size() and not transport.is_closing():
        await anyio.sleep(delay)
        delay = min(delay * 2 or 0.001, 0.05)


def _send_all(out_fd: int, in_fd: int, offset: int, count: int, progress: _Progress, follow: Follow | None) -> None:
    """Send ``count`` bytes of ``in_fd`` from ``offset`` to the non-blocking socket ``out_fd``; close both fds."""
    try:
        poller = select.poll()
        poller.register(out_fd, select.POLLOUT)
        end = offset + count
        readable = end if follow is None else offset
        while offset < end:
            if progress.stop.is_set():
                raise ConnectionAbortedError("the response was abandoned")
            if follow is not None and offset >= readable:
                # Timed waits, so an abandoned response is seen within _POLL_MS while the writer is slow.
                readable = min(end, follow(offset, _POLL_MS / 1000))
                continue
            try:
                sent = os.sendfile(out_fd, in_fd, offset, min(readable - offset, _MAX_PER_CALL))
            except BlockingIOError:
                for _fd, events in poller.poll(_POLL_MS):
                    if events & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                        raise ConnectionResetError("the client closed the connection") from None
                continue
            if sent == 0:
                raise OSError(f"the stored file ended {end - offset} bytes early")
            offset += sent
            progress.sent += sent
    finally:
        with contextlib.suppress(OSError):
            os.close(in_fd)
        with contextlib.suppress(OSError):
            os.close(out_fd)
