"""One set of kept-alive connections per Client, shared by the API calls (httpx) and the blob bodies (threads).

:class:`ConnectionPool` holds ``http.client`` connections per (scheme, host, port), with TLS per host (docker's
certs.d, through ``ssl_for``), a connect timeout for TCP and TLS set-up and a read timeout for every wait after.

Why one set: a registry that is tens of milliseconds away charges a round trip for every new TCP connection
(and more for TLS). When the API calls and the blob transfers had separate pools, the connection that fetched
the manifest was never used for a blob, and every blob thread paid its own handshake.

So httpx keeps doing what it is good at (auth flows, redirects, building requests, decoding responses), but the
bytes go over connections taken from the same :class:`ConnectionPool` the blob threads use: :class:`PoolTransport`
is the httpx transport, in place of httpx's own (and httpcore, which the client never imports). Each exchange runs
in a worker thread: the request is sent, and a small body (every API answer) is read in the same thread, so one call
costs one thread hand-off; a large body streams through further hand-offs, a megabyte at a time.

``ConnectionPool.preconnect`` opens connections ahead of need, in background threads: while a manifest is in
flight, the blob transfers it will start find their connections ready instead of each paying a handshake.

Errors come out as httpx's exceptions (the ones its own transport raises), which ``transport.mapped_errors``
maps to regtool's.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import NoReturn

import httpx

from regtool.client.net import parking
from regtool.client.net.schemes import default_port
from regtool.client.net.tls import TrustOnDemand
from regtool.client.threads import in_thread

__all__ = [
    "BODY_SENDER",
    "KEEP_BODY",
    "BodySender",
    "ConnectionPool",
    "Exchange",
    "PoolTransport",
    "exchange_of",
]

Origin = tuple[str, str, int]
BodySender = Callable[[http.client.HTTPConnection], None]

# Answers up to this size are read with the status line, in the same thread hand-off (tokens, tag lists, error
# envelopes, most manifests); larger ones stream.
_INLINE_BODY = 1 << 20
_STREAM_CHUNK = 1 << 20
EXCHANGE = "regtool.exchange"
# A request extension: leave the body on the connection whatever its size (a blob thread will read it, and a
# body cut short must reach it as such, for a resume).
KEEP_BODY = "regtool.keep_body"
# A request extension: a callable that sends the request's body on the connection, in the exchange's thread
# (a blob upload from a file: ``BlobFetcher.body_sender``). It is called once per attempt, so an auth retry or
# a 307/308 sends the body again.
BODY_SENDER = "regtool.body_sender"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Idle connections kept per origin; more than the largest useful concurrency to one registry.
_MAX_IDLE = 64


class _HTTPConnection(http.client.HTTPConnection):
    """Connects within the connection's ``timeout``, then waits up to ``io_timeout`` for each read or write."""

    io_timeout: float | None = None
    scheme = "http"
    # Whether the TCP connection was one the CLI opened at start-up (``parking``), not dialled for this request.
    took_parked = False

    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._create_connection = self._parked_or_dialled

    def _parked_or_dialled(
        self, address: tuple[str, int], timeout: float | None, source_address: tuple[str, int] | None = None
    ) -> socket.socket:
        return _parked_or_dialled(self, address, timeout, source_address)

    def connect(self) -> None:
        _connect(self, super().connect)

    def getresponse(self) -> http.client.HTTPResponse:
        return _response(self, super().getresponse)


class _HTTPSConnection(http.client.HTTPSConnection):
    """As _HTTPConnection; the TLS handshake counts as connecting."""

    io_timeout: float | None = None
    scheme = "https"
    took_parked = False

    def __init__(self, host: str, port: int, *, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.tls_context = context
        self._create_connection = self._parked_or_dialled

    def _parked_or_dialled(
        self, address: tuple[str, int], timeout: float | None, source_address: tuple[str, int] | None = None
    ) -> socket.socket:
        return _parked_or_dialled(self, address, timeout, source_address)

    def connect(self) -> None:
        with _exit_waits_for_it():
            _connect(self, self._connect_tls)

    def _connect_tls(self) -> None:
        context = self.tls_context
        if not isinstance(context, TrustOnDemand) or context.trusted:
            super().connect()
            return
        # The context's CA store is loaded only if the server answers in TLS: a plain-HTTP registry (a loopback
        # one, asked over https and http at once) fails this handshake without the client ever loading it.
        http.client.HTTPConnection.connect(self)
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host, do_handshake_on_connect=False)
        if _answers_in_tls(self.sock, self.timeout):
            context.load_trust()
        self.sock.do_handshake()

    def getresponse(self) -> http.client.HTTPResponse:
        return _response(self, super().getresponse)


# TLS set-ups under way in worker threads, which are daemons (a Ctrl-C must not wait for a read): the interpreter's
# exit waits for these, since OpenSSL cleaning up at exit under a running handshake or CA load can crash the
# process. Each ends within its connect timeout; the wait is capped in case one does not.
_tls_setups = threading.Condition()
_tls_setups_running = 0
_EXIT_WAIT_FOR_TLS = 60.0


@contextlib.contextmanager
def _exit_waits_for_it() -> Iterator[None]:
    global _tls_setups_running
    with _tls_setups:
        _tls_setups_running += 1
    try:
        yield
    finally:
        with _tls_setups:
            _tls_setups_running -= 1
            _tls_setups.notify_all()


@atexit.register
def _wait_for_tls_setups() -> None:
    with _tls_setups:
        _tls_setups.wait_for(lambda: _tls_setups_running == 0, timeout=_EXIT_WAIT_FOR_TLS)


def _answers_in_tls(sock: ssl.SSLSocket, timeout: float | None) -> bool:
    """Send the ClientHello and say whether the server's answer begins a TLS handshake record: False for text (an
    HTTP server's 400) or a connection closed or reset, where the handshake can only fail before any certificate
    is checked. It only peeks: the handshake then reads the answer itself and fails as it would have. No answer
    within ``timeout`` is a timeout, as the handshake's would be."""
    sock.setblocking(False)
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        pass  # the ClientHello is sent; the answer is awaited
    except OSError:  # ssl.SSLError included: the handshake that follows meets it again and says what it is
        return False
    else:
        return True
    finally:
        sock.settimeout(timeout)
    try:
        # The raw socket's recv (SSLSocket.recv would decrypt, and refuses flags), waiting up to ``timeout``.
        first = socket.socket.recv(sock, 1, socket.MSG_PEEK)
    except TimeoutError:
        raise
    except OSError:
        return False
    return first == _TLS_HANDSHAKE_RECORD


# The content type byte that begins every TLS record carrying a handshake message (a ServerHello).
_TLS_HANDSHAKE_RECORD = b"\x16"


def _parked_or_dialled(
    conn: _HTTPConnection | _HTTPSConnection,
    address: tuple[str, int],
    timeout: float | None,
    source_address: tuple[str, int] | None,
) -> socket.socket:
    """The TCP connection under ``conn``: one opened ahead at start-up (``parking``) when there is one for its
    origin, else a new one, as ``http.client`` makes it."""
    parked = parking.take(conn.scheme, address[0], address[1], timeout if timeout is not None else 0.0)
    if parked is None:
        return socket.create_connection(address, timeout, source_address)
    parked.settimeout(timeout)
    conn.took_parked = True
    return parked


def _connect(conn: _HTTPConnection | _HTTPSConnection, connect: Callable[[], None]) -> None:
    try:
        connect()
    except TimeoutError:
        raise TimeoutError(f"timed out connecting to {conn.host}:{conn.port} after {conn.timeout} s") from None
    conn.sock.settimeout(conn.io_timeout)


def _response(
    conn: _HTTPConnection | _HTTPSConnection, getresponse: Callable[[], http.client.HTTPResponse]
) -> http.client.HTTPResponse:
    try:
        return getresponse()
    except TimeoutError:
        raise TimeoutError(f"timed out: no response from {conn.host}:{conn.port} within {conn.io_timeout} s") from None


class ConnectionPool:
    """Kept-alive ``http.client`` connections per origin, safe to use from any thread."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        timeout: float,
        ssl_for: Callable[[str], ssl.SSLContext] | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self._ssl = ssl_context
        self._ssl_for = ssl_for
        self.timeout = timeout
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._opening: dict[Origin, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        """An idle connection to the origin that the server has not closed, else a new (unconnected) one."""
        while True:
            with self._lock:
                idle = self._idle.get((scheme, host, port))
                # Oldest first: a connection that has carried a request has its handshake (and TCP's slow
                # start) behind it, where one just opened ahead of need may still be on its way.
                conn = idle.pop(0) if idle else None
            if conn is None:
                break
            if not _dropped(conn):
                return conn
            conn.close()
        return self.new(scheme, host, port)

    def new(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        """A fresh connection: the connect timeout for TCP and TLS set-up, then the (read) timeout for each I/O."""
        conn: _HTTPConnection | _HTTPSConnection
        if scheme == "https":
            context = self.context_for(host, port)
            conn = _HTTPSConnection(host, port, timeout=self.connect_timeout, context=context)
        else:
            conn = _HTTPConnection(host, port, timeout=self.connect_timeout)
        conn.io_timeout = self.timeout
        return conn

    def context_for(self, host: str, port: int) -> ssl.SSLContext:
        """The host's own TLS context (docker's certs.d) when the client has per-host settings."""
        return self._ssl_for(host if port == 443 else f"{host}:{port}") if self._ssl_for else self._ssl

    def put(self, scheme: str, host: str, port: int, conn: http.client.HTTPConnection) -> None:
        """Keep ``conn`` (connected, its last response read to the end) for the next request to the origin."""
        with self._lock:
            idle = self._idle.setdefault((scheme, host, port), [])
            if not self._closed and len(idle) < _MAX_IDLE:
                idle.append(conn)
                return
        conn.close()

    def preconnect(self, scheme: str, host: str, port: int, count: int) -> None:
        """Open connections in background threads until ``count`` are idle or being opened for the origin.

        Failures are dropped silently: the request that needs the connection opens its own and reports why.
        """
        origin = (scheme, host, port)
        with self._lock:
            if self._closed:
                return
            wanted = max(0, count - len(self._idle.get(origin, ())) - self._opening.get(origin, 0))
            self._opening[origin] = self._opening.get(origin, 0) + wanted
        # Not daemons: a TLS handshake cut off by the interpreter's exit can crash it; each thread ends within
        # the connect timeout. Started by a thread of their own: each start waits until the new thread runs,
        # which would hold up the event loop, about to send the request these connections stand ready for.
        if wanted:
            threading.Thread(target=self._open_many, args=(*origin, wanted), name="regtool-preconnect").start()

    def _open_many(self, scheme: str, host: str, port: int, count: int) -> None:
        for _ in range(count - 1):
            threading.Thread(target=self._open, args=(scheme, host, port), name="regtool-preconnect").start()
        self._open(scheme, host, port)

    def _open(self, scheme: str, host: str, port: int) -> None:
        try:
            conn = self.new(scheme, host, port)  # a host's broken TLS settings raise here: that request says so
            try:
                conn.connect()
            except OSError:
                conn.close()
            else:
                self.put(scheme, host, port, conn)
        except Exception:
            pass
        finally:
            with self._lock:
                self._opening[(scheme, host, port)] -= 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle connection the server has closed (or sent something unasked on) reads as ready: do not reuse it."""
    return conn.sock is None or parking.dropped(conn.sock)


class PoolTransport(httpx.AsyncBaseTransport):
    """The httpx transport over ``source``'s connections."""

    def __init__(self, source: ConnectionPool) -> None:
        self._source = source

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = Exchange(self._source, request)
        try:
            sender = request.extensions.get(BODY_SENDER)
            if callable(sender):  # the body is a file, sent by its own code in the exchange's thread
                await in_thread(exchange.start, b"", sender, abandon_on_cancel=True)
            elif isinstance(request.stream, httpx.ByteStream):  # a body given as bytes: sent with the headers
                await in_thread(exchange.start, b"".join(request.stream), abandon_on_cancel=True)
            else:  # a streamed body (an upload from a generator): one thread hand-off per piece
                chunked = request.headers.get("Transfer-Encoding", "").lower() == "chunked"
                await in_thread(exchange.open_streaming, abandon_on_cancel=True)
                async for piece in request.stream:  # type: ignore[union-attr]
                    if piece:
                        await in_thread(exchange.send, piece, chunked, abandon_on_cancel=True)
                await in_thread(exchange.end_streaming, chunked, abandon_on_cancel=True)
        except BaseException:
            exchange.abandon()  # cancelled while a thread runs on: the connection is closed when it is done
            raise
        # A stream, not content: httpx adds no header of its own to what the registry sent.
        body = httpx.ByteStream(exchange.body) if exchange.complete else _Stream(exchange)
        return httpx.Response(exchange.status, headers=exchange.headers, stream=body, extensions=exchange.extensions)

    async def aclose(self) -> None:
        """Nothing to do: the connections belong to ``source``, which its owner closes."""


class Exchange:
    """One request and its response over a pooled connection; runs in worker threads.

    A response body is either read with the head (``complete``: ``body`` holds it) or left on the connection,
    for httpx to stream (``read_chunk``) or for a blob thread to read into its own buffer (``readinto``); once
    the body has been read to its end the connection goes back to the pool.
    """

    def __init__(self, source: ConnectionPool, request: httpx.Request) -> None:
        self._source = source
        self._request = request
        url = request.url
        self._origin = (url.scheme, url.raw_host.decode("ascii"), url.port or default_port(url.scheme))
        self._conn: http.client.HTTPConnection | None = None
        self._response: http.client.HTTPResponse | None = None
        self._lock = threading.Lock()
        self._abandoned = False
        self._due_at_end = 0
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.extensions: dict[str, object] = {}
        self.body = b""
        self.complete = False

    def start(self, body: bytes, sender: BodySender | None = None) -> None:
        """Send the request with its whole ``body`` (or with ``sender`` sending it) and read the response head
        (and a small body)."""
        method = self._request.method
        for attempt in (0, 1):
            conn = self._source.get(*self._origin) if attempt == 0 else self._source.new(*self._origin)
            if not self._hold(conn):
                return
            reused = conn.sock is not None
            try:
                self._put_head(conn, None if sender is not None else body)
                if sender is not None:
                    sender(conn)
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._finish(reusable=False)
                # Closed by hand too: an abandon that took it first closed it while this thread was connecting,
                # and the connect then gave it a new socket that nobody else will close.
                conn.close()
                # A kept-alive (or parked) connection the server closed as the request went out: the request
                # was not processed, so an idempotent one is sent once more on a fresh connection. Not one whose
                # body a sender streamed: part of it may have reached an upload session.
                waited = reused or getattr(conn, "took_parked", False)
                if waited and attempt == 0 and method in _IDEMPOTENT and sender is None:
                    continue
                raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
            except BaseException as exc:
                connected = reused or conn.sock is not None
                self._finish(reusable=False)
                # Closed by hand too: an abandon that took it first closed it while this thread was connecting,
                # and the connect then gave it a new socket that nobody else will close.
                conn.close()
                _reraise(exc, connected=connected)
            self._accept(conn, response)
            return

    def open_streaming(self) -> None:
        """Send the request head; the body follows in ``send`` calls, then ``end_streaming``."""
        conn = self._source.get(*self._origin)
        if not self._hold(conn):
            return
        reused = conn.sock is not None
        try:
            self._put_head(conn, None)
        except BaseException as exc:
            connected = reused or conn.sock is not None
            self._finish(reusable=False)
            conn.close()  # as in ``start``: a socket the connect made after an abandon closed the connection
            _reraise(exc, connected=connected)

    def _hold(self, conn: http.client.HTTPConnection) -> bool:
        """Make ``conn`` this exchange's while its thread sends and reads, so that ``abandon`` and ``interrupt``
        reach it; False (the connection closed) when the exchange was abandoned before it started."""
        with self._lock:
            if not self._abandoned:
                self._conn = conn
                return True
        conn.close()
        return False

    def send(self, piece: bytes, chunked: bool) -> None:
        conn = self._conn
        if conn is None:
            raise httpx.WriteError("the request was abandoned")
        try:
            conn.send(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
        except BaseException as exc:
            self._finish(reusable=False)
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc

    def end_streaming(self, chunked: bool) -> None:
        conn = self._conn
        if conn is None:
            raise httpx.WriteError("the request was abandoned")
        try:
            if chunked:
                conn.send(b"0\r\n\r\n")
            response = conn.getresponse()
        except BaseException as exc:
            self._finish(reusable=False)
            _reraise(exc, connected=True)
        self._accept(conn, response)

    def _put_head(self, conn: http.client.HTTPConnection, body: bytes | None) -> None:
        request = self._request
        conn.putrequest(
            request.method,
            request.url.raw_path.decode("ascii"),
            skip_host=True,
            skip_accept_encoding=True,
        )
        for name, value in request.headers.raw:
            conn.putheader(name.decode("latin-1"), value.decode("latin-1"))
        conn.endheaders(body or None)

    def _accept(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        """Take the response head; a small body is read at once and the connection goes back to the pool."""
        with self._lock:
            if self._abandoned:
                conn.close()
                return
            self._conn, self._response = conn, response
        self.status = response.status
        self.headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.getheaders()]
        self.extensions = {
            "http_version": b"HTTP/1.1",
            "reason_phrase": response.reason.encode("latin-1"),
            # The blob threads read a large body straight from the connection (``exchange_of``).
            EXCHANGE: self,
        }
        length = response.length
        if (
            self._request.method == "HEAD"
            or response.status in {204, 304}
            or (length is not None and length <= _INLINE_BODY and not self._request.extensions.get(KEEP_BODY))
        ):
            self.body = self._read_all()
            self.complete = True

    def _read_all(self) -> bytes:
        try:
            assert self._response is not None
            data = self._response.read()
        except BaseException as exc:
            self._finish(reusable=False)
            _reraise(exc, connected=True)
        self._finish(reusable=True)
        return data

    @property
    def length(self) -> int | None:
        """Body bytes still due (None when the length is not known: a chunked body); after the end, what was
        still due when the connection ended (0 for a complete body)."""
        return self._response.length if self._response is not None else self._due_at_end

    def readinto(self, buffer: memoryview) -> int:
        """Read the next bytes of the body into ``buffer`` (0 at its end, where the connection is given back).

        Errors are http.client's and the socket's, as they come: the blob threads tell a broken body from the
        bytes they got.
        """
        response = self._response
        if response is None:
            return 0
        n = response.readinto(buffer)
        if not n:
            self._due_at_end = response.length or 0
            self._finish(reusable=not response.length)
        return n

    def read_chunk(self) -> bytes:
        response = self._response
        if response is None:
            return b""
        try:
            data = response.read(_STREAM_CHUNK)
        except BaseException as exc:
            self._finish(reusable=False)
            _reraise(exc, connected=True)
        if not data:
            if response.length:
                self._finish(reusable=False)
                raise httpx.RemoteProtocolError(f"connection closed {response.length} bytes before the end of the body")
            self._finish(reusable=True)
        return data

    def _finish(self, *, reusable: bool) -> None:
        with self._lock:
            conn, response = self._conn, self._response
            self._conn = self._response = None
        if conn is None:
            return
        if reusable and response is not None and not response.will_close and response.isclosed():
            self._source.put(*self._origin, conn)
        else:
            conn.close()

    def abandon(self) -> None:
        """The caller stopped waiting or reading: the connection is closed, and a thread blocked on it woken."""
        with self._lock:
            self._abandoned = True
            if self._conn is not None:
                _interrupt(self._conn)
        self._finish(reusable=False)

    def interrupt(self) -> None:
        """Wake a thread blocked reading or writing this exchange's connection: that read or write fails at once
        (the thread then ends the exchange), where it would wait for the server up to the read timeout."""
        with self._lock:
            if self._conn is not None:
                _interrupt(self._conn)


def _interrupt(conn: http.client.HTTPConnection) -> None:
    # A shutdown at the socket's own level, under TLS too (no close_notify to send to a server that is not
    # reading): a thread blocked in recv or send on it returns at once. Closing alone would not wake it, and
    # closing a response another thread is reading waits for that read (the buffered reader's lock).
    if conn.sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)


def exchange_of(response: httpx.Response) -> Exchange | None:
    """The pooled exchange behind ``response`` (None for a response that did not come through the pool)."""
    exchange = response.extensions.get(EXCHANGE)
    return exchange if isinstance(exchange, Exchange) else None


class _Stream(httpx.AsyncByteStream):
    """A response body read a megabyte per thread hand-off."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await in_thread(self._exchange.read_chunk, abandon_on_cancel=True):
            yield chunk

    async def aclose(self) -> None:
        self._exchange.abandon()


def _reraise(exc: BaseException, *, connected: bool) -> NoReturn:
    """Raise httpx's exception for ``exc`` (``_mapped``), or ``exc`` itself when it has none."""
    mapped = _mapped(exc, connected=connected)
    if mapped is exc:
        raise exc
    raise mapped from exc


def _mapped(exc: BaseException, *, connected: bool) -> BaseException:
    """httpx's exception for an ``http.client``/socket error (other exceptions pass through unchanged)."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError | socket.timeout):
        return httpx.ReadTimeout(detail) if connected else httpx.ConnectTimeout(detail)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return httpx.ConnectError(detail)
    if isinstance(exc, http.client.HTTPException):
        return httpx.RemoteProtocolError(detail)
    if isinstance(exc, OSError):
        return httpx.ReadError(detail) if connected else httpx.ConnectError(detail)
    return exc
