"""A loopback-only HTTP/1.1 proxy that injects faults between a client and a real registry.

Placed in front of a real ``regtool serve`` or ``docker-registry``; the client talks to the proxy's port as if
it were the registry (the ``Host`` header is passed through, so absolute ``Location`` headers point back at
the proxy)::

    with run_fault_proxy(serve.port) as proxy:
        proxy.add(Fault.drop(after=100_000, method="GET", path=r"/blobs/sha256:"))
        pull(f"{proxy.host}/team/app:1.0")
        proxy.body_bytes(method="GET", path=r"/blobs/")     # response body bytes relayed to the client
        proxy.upload_bytes(path=r"/blobs/uploads/")          # request body bytes relayed to the registry

Faults (each applies to the first ``times`` matching requests, after ``skip`` matches were let through):

- ``drop(after=N)``: relay the response head and N body bytes, then close the connection;
- ``drop_request(after=N)``: relay N bytes of the request body upstream, then close both connections;
- ``stall(seconds, after=N)``: pause the response body after N bytes (then carry on); ``after=-1`` pauses
  before the response head (the registry "thinks" for that long);
- ``status(429, headers={"Retry-After": "1"})``: answer this status itself (the request never goes upstream);
- ``truncate(to=N)``: rewrite Content-Length to N and send only N body bytes (a well-framed short body);
- ``flip(at=N)``: invert the bits of body byte N;
- ``strip_range()``: forward the request without its ``Range`` header (a registry that ignores ranges).

``throttle(bytes_per_second)`` slows every body (both directions), so a test can kill a client mid-transfer.
Every request is recorded (``Exchange``: method, path, query, status, request/response body bytes, the fault applied).
The proxy binds 127.0.0.1 only and connects only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Exchange", "Fault", "FaultProxy", "run_fault_proxy"]

_PIECE = 64 << 10
_HEAD_LIMIT = 64 << 10
_SOCKET_BUFFER = 128 << 10


@dataclass
class Fault:
    """One fault rule; build it with the class methods. ``path`` is a regex searched in the request path."""

    kind: str
    method: str | None = None
    path: str | None = None
    times: int = 1
    skip: int = 0
    after: int = 0
    seconds: float = 0.0
    status_code: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    applied: int = 0

    @classmethod
    def drop(
        cls, *, after: int, method: str | None = "GET", path: str | None = None, times: int = 1, skip: int = 0
    ) -> Fault:
        return cls("drop", method, path, after=after, times=times, skip=skip)

    @classmethod
    def drop_request(
        cls, *, after: int, method: str | None = None, path: str | None = None, times: int = 1, skip: int = 0
    ) -> Fault:
        return cls("drop_request", method, path, after=after, times=times, skip=skip)

    @classmethod
    def stall(
        cls,
        seconds: float,
        *,
        after: int = 0,
        method: str | None = "GET",
        path: str | None = None,
        times: int = 1,
        skip: int = 0,
    ) -> Fault:
        return cls("stall", method, path, after=after, seconds=seconds, times=times, skip=skip)

    @classmethod
    def status(
        cls,
        code: int,
        *,
        headers: dict[str, str] | None = None,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        skip: int = 0,
    ) -> Fault:
        return cls("status", method, path, status_code=code, headers=dict(headers or {}), times=times, skip=skip)

    @classmethod
    def strip_range(
        cls, *, method: str | None = "GET", path: str | None = None, times: int = 1, skip: int = 0
    ) -> Fault:
        return cls("strip_range", method, path, times=times, skip=skip)

    @classmethod
    def truncate(
        cls, *, to: int, method: str | None = "GET", path: str | None = None, times: int = 1, skip: int = 0
    ) -> Fault:
        return cls("truncate", method, path, after=to, times=times, skip=skip)

    @classmethod
    def flip(
        cls, *, at: int, method: str | None = "GET", path: str | None = None, times: int = 1, skip: int = 0
    ) -> Fault:
        return cls("flip", method, path, after=at, times=times, skip=skip)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass
class Exchange:
    """One request through the proxy."""

    method: str
    path: str
    status: int = 0
    query: str = ""
    request_bytes: int = 0
    response_bytes: int = 0
    fault: str | None = None
    start: float = field(default_factory=time.monotonic)
    end: float | None = None


class _Closed(Exception):
    """One side of the connection went away."""


@dataclass
class _Head:
    first: str
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def replace(self, name: str, value: str) -> None:
        lowered = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lowered] + [(name, value)]

    def encode(self) -> bytes:
        lines = [self.first, *(f"{k}: {v}" for k, v in self.headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader, first: bytes = b"") -> _Head | None:
    try:
        raw = first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise _Closed("connection closed inside a message head") from None
        return None
    except (asyncio.LimitOverrunError, ConnectionError) as exc:
        raise _Closed(str(exc)) from None
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return _Head(lines[0], headers)


class FaultProxy:
    """The proxy; use :func:`run_fault_proxy`. Thread-safe API for the test thread."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._exchanges: list[Exchange] = []
        self._rate: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- the test's side --------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def throttle(self, bytes_per_second: float | None) -> None:
        """Relay bodies at about this rate (None: as fast as possible)."""
        with self._lock:
            self._rate = bytes_per_second

    def exchanges(self, method: str | None = None, path: str | None = None) -> list[Exchange]:
        with self._lock:
            items = list(self._exchanges)
        return [
            e
            for e in items
            if (method is None or e.method == method) and (path is None or re.search(path, e.path) is not None)
        ]

    def body_bytes(self, method: str | None = "GET", path: str | None = None) -> int:
        """Response body bytes relayed to the client for the matching requests."""
        return sum(e.response_bytes for e in self.exchanges(method, path))

    def upload_bytes(self, method: str | None = None, path: str | None = None) -> int:
        """Request body bytes relayed to the registry for the matching requests."""
        return sum(e.request_bytes for e in self.exchanges(method, path))

    def reset_counts(self) -> None:
        with self._lock:
            self._exchanges.clear()

    def faults_applied(self) -> int:
        with self._lock:
            return sum(f.applied for f in self._faults)

    # -- the loop's side --------------------------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.applied >= fault.times or not fault.matches(method, path):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.applied += 1
                return fault
        return None

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    async def _pace(self, nbytes: int) -> None:
        rate = self._rate
        if rate:
            await asyncio.sleep(nbytes / rate)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=_HEAD_LIMIT)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Abort every open connection, so no stream outlives the loop.
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.sleep(0)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._writers.add(client_w)
        sock = client_w.get_extra_info("socket")
        if sock is not None:
            # Small kernel buffers, so a throttled client cannot park megabytes in them: what it has "sent"
            # is close to what the proxy relayed, and a killed client's buffers hold little.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
        try:
            # A TLS ClientHello (the client tries https first on loopback): close, as a plain-http server would.
            first = await client_r.read(1)
            if not first or not first.isalpha():
                return
            while True:
                head = await _read_head(client_r, first)
                first = b""
                if head is None:
                    return
                if upstream is None:
                    upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port, limit=_HEAD_LIMIT)
                    self._writers.add(upstream[1])
                keep = await self._exchange(head, client_r, client_w, *upstream)
                if not keep:
                    return
        except (_Closed, ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            for writer in (client_w, upstream[1] if upstream else None):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.close()
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await writer.wait_closed()

    async def _exchange(
        self,
        head: _Head,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        up_r: asyncio.StreamReader,
        up_w: asyncio.StreamWriter,
    ) -> bool:
        """Relay one request and its response; False when the connection must close."""
        method, _, rest = head.first.partition(" ")
        path, _, query = rest.rpartition(" ")[0].partition("?")
        exchange = Exchange(method, path, query=query)
        self._record(exchange)
        fault = self._take_fault(method, path)
        exchange.fault = fault.kind if fault else None
        try:
            if fault is not None and fault.kind == "status":
                # Answer here: read the request body away, never forward it.
                await self._relay_request_body(head, client_r, None, exchange, None)
                exchange.status = fault.status_code
                body = b'{"errors":[{"code":"UNKNOWN","message":"injected by the fault proxy"}]}'
                reply = _Head(f"HTTP/1.1 {fault.status_code} Injected", [])
                reply.headers = [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    *fault.headers.items(),
                ]
                client_w.write(reply.encode() + body)
                await client_w.drain()
                return True
            if fault is not None and fault.kind == "strip_range":
                head.headers = [(k, v) for k, v in head.headers if k.lower() != "range"]
            up_w.write(head.encode())
            limit = fault.after if fault is not None and fault.kind == "drop_request" else None
            if not await self._relay_request_body(head, client_r, up_w, exchange, limit):
                return False
            await up_w.drain()
            response = await _read_head(up_r)
            if response is None:
                return False
            status_text = response.first.split(" ", 2)
            exchange.status = int(status_text[1]) if len(status_text) > 1 and status_text[1].isdigit() else 0
            return await self._relay_response(method, response, up_r, client_w, exchange, fault)
        finally:
            exchange.end = time.monotonic()

    async def _relay_request_body(
        self,
        head: _Head,
        client_r: asyncio.StreamReader,
        up_w: asyncio.StreamWriter | None,
        exchange: Exchange,
        limit: int | None,
    ) -> bool:
        """Copy the request body upstream (or discard it when ``up_w`` is None); False after a drop_request."""
        if (head.get("Transfer-Encoding") or "").lower() == "chunked":
            return await self._relay_chunked(client_r, up_w, exchange, request=True, limit=limit)
        length = int(head.get("Content-Length") or 0)
        remaining = length
        while remaining:
            piece = await client_r.read(min(_PIECE, remaining))
            if not piece:
                raise _Closed("client closed inside the request body")
            if limit is not None and exchange.request_bytes + len(piece) >= limit:
                piece = piece[: max(0, limit - exchange.request_bytes)]
                if up_w is not None and piece:
                    up_w.write(piece)
                    await up_w.drain()
                exchange.request_bytes += len(piece)
                return False
            remaining -= len(piece)
            exchange.request_bytes += len(piece)
            if up_w is not None:
                up_w.write(piece)
                await up_w.drain()
            await self._pace(len(piece))
        return True

    async def _relay_chunked(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter | None,
        exchange: Exchange,
        *,
        request: bool,
        limit: int | None = None,
    ) -> bool:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            data = await reader.readexactly(size + 2) if size else b""
            if request:
                exchange.request_bytes += size
            else:
                exchange.response_bytes += size
            if writer is not None:
                writer.write(size_line + data)
            if limit is not None and exchange.request_bytes >= limit:
                return False
            if size == 0:
                trailer = await reader.readuntil(b"\r\n")
                if writer is not None:
                    writer.write(trailer)
                    await writer.drain()
                return True
            if writer is not None:
                await writer.drain()
            await self._pace(size)

    async def _relay_response(
        self,
        method: str,
        response: _Head,
        up_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        exchange: Exchange,
        fault: Fault | None,
    ) -> bool:
        no_body = method == "HEAD" or exchange.status in (204, 304) or 100 <= exchange.status < 200
        if not no_body and (response.get("Transfer-Encoding") or "").lower() == "chunked":
            client_w.write(response.encode())
            await self._relay_chunked(up_r, client_w, exchange, request=False)
            return True
        length_text = response.get("Content-Length")
        length = 0 if no_body else (int(length_text) if length_text is not None else None)
        kind = fault.kind if fault is not None else None
        send_limit: int | None = None
        if kind == "truncate" and length is not None and fault is not None:
            send_limit = min(fault.after, length)
            response.replace("Content-Length", str(send_limit))
            response.replace("Connection", "close")
        elif kind == "drop" and fault is not None:
            send_limit = fault.after
        if kind == "stall" and fault is not None and fault.after < 0:
            await asyncio.sleep(fault.seconds)
        client_w.write(response.encode())
        await client_w.drain()
        offset = 0
        stalled = kind == "stall" and fault is not None and fault.after < 0
        while length is None or offset < length:
            want = _PIECE if length is None else min(_PIECE, length - offset)
            piece = await up_r.read(want)
            if not piece:
                if length is None:
                    return False
                raise _Closed("registry closed inside the response body")
            if kind == "flip" and fault is not None and offset <= fault.after < offset + len(piece):
                i = fault.after - offset
                piece = piece[:i] + bytes([piece[i] ^ 0xFF]) + piece[i + 1 :]
            if kind == "stall" and fault is not None and not stalled and offset + len(piece) > fault.after:
                i = max(0, fault.after - offset)
                client_w.write(piece[:i])
                await client_w.drain()
                exchange.response_bytes += i
                await asyncio.sleep(fault.seconds)
                stalled = True
                piece, offset = piece[i:], offset + i
            if send_limit is not None and offset + len(piece) >= send_limit:
                piece = piece[: send_limit - offset]
                client_w.write(piece)
                await client_w.drain()
                exchange.response_bytes += len(piece)
                return False
            client_w.write(piece)
            await client_w.drain()
            exchange.response_bytes += len(piece)
            offset += len(piece)
            await self._pace(len(piece))
        if send_limit is not None and send_limit >= offset:
            return False
        return (response.get("Connection") or "").lower() != "close"


@contextlib.contextmanager
def run_fault_proxy(upstream_port: int) -> Iterator[FaultProxy]:
    """Run a FaultProxy for ``127.0.0.1:upstream_port`` in a background thread; stop it on exit."""
    proxy = FaultProxy(upstream_port)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stopped = asyncio.Event()
    errors: list[BaseException] = []

    async def main() -> None:
        try:
            await proxy.start()
        except BaseException as exc:
            errors.append(exc)
            started.set()
            return
        started.set()
        await stopped.wait()
        await proxy.stop()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await loop.shutdown_asyncgens()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), name="fault-proxy", daemon=True)
    thread.start()
    started.wait(timeout=10)
    if errors:
        thread.join(timeout=5)
        loop.close()
        raise RuntimeError(f"fault proxy did not start: {errors[0]}")
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout=10)
        loop.close()
