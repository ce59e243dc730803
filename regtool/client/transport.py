"""The one place that builds the client's ``httpx.AsyncClient`` and maps httpx exceptions to regtool errors.

- Connection limits are sized to the number of concurrent transfers (``jobs``), so every worker keeps its own
  kept-alive connection and connections are reused across blobs.
- TLS: verified by default (optionally against ``ca_cert``); ``insecure`` turns verification off.
- Schemes: https first. Plain http is tried after https only for loopback hosts (as docker does) or when
  ``insecure``; ``plain_http`` means http only. Once https produced an HTTP response, http is never tried.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx

from regtool.__about__ import __version__
from regtool.client.tls import TLSContexts, TLSSettings
from regtool.errors import TransportError
from regtool.reference import is_loopback_host

__all__ = [
    "READ_SIZE",
    "USER_AGENT",
    "build_http_client",
    "candidate_schemes",
    "make_ssl_context",
    "mapped_errors",
    "redact_url",
]

USER_AGENT = f"regtool/{__version__}"
# httpcore asks the socket stream for 64 KiB at a time; asyncio hands over up to 256 KiB per wakeup, which anyio
# then splits (copying the rest) and h11 parses piece by piece. Reading up to 1 MiB per call takes whatever the
# event loop has in one go: a quarter of the per-chunk overhead on large blob bodies.
READ_SIZE = 1 << 20


class _LargeReadStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, READ_SIZE), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _LargeReadStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


class _LargeReadBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend whose streams read up to READ_SIZE bytes per call."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _LargeReadStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _LargeReadStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def make_ssl_context(insecure: bool = False, ca_cert: Path | None = None) -> ssl.SSLContext:
    """The default TLS context: the system store plus ``ca_cert``, verified unless ``insecure`` (tls.py)."""
    return TLSContexts(TLSSettings(insecure=insecure, ca_cert=ca_cert, certs_d=_NO_CERTS_D)).default()


# issue 5: the certs.d root is looked up per host by TLSContexts; this one never exists, for make_ssl_context.
_NO_CERTS_D = Path("/nonexistent/regtool-certs.d")


class _PerHostTLSTransport(httpx.AsyncBaseTransport):
    """Sends each https request through a pool whose SSL context is the one for its host (docker's certs.d)."""

    def __init__(self, contexts: TLSContexts, make: Callable[[ssl.SSLContext], httpx.AsyncBaseTransport]) -> None:
        self._contexts = contexts
        self._make = make
        self._transports: dict[int, httpx.AsyncBaseTransport] = {}

    def _transport(self, request: httpx.Request) -> httpx.AsyncBaseTransport:
        if request.url.scheme == "https":
            context = self._contexts.for_host(request.url.netloc.decode("ascii"))
        else:
            context = self._contexts.default()
        transport = self._transports.get(id(context))
        if transport is None:
            transport = self._transports[id(context)] = self._make(context)
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport(request).handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()
        self._transports.clear()


def build_http_client(
    *,
    jobs: int = 8,
    timeout: float = 30.0,
    connect_timeout: float = 10.0,
    insecure: bool = False,
    ca_cert: Path | None = None,
    auth: httpx.Auth | None = None,
    ssl_context: ssl.SSLContext | None = None,
    tls: TLSContexts | None = None,
) -> httpx.AsyncClient:
    """An AsyncClient with limits for ``jobs`` concurrent transfers, timeouts and the TLS settings.

    ``connect_timeout`` bounds the TCP connect and TLS handshake; ``timeout`` each read and write (a registry
    silent for that long fails the attempt, whatever the total time) and the wait for a pooled connection.

    With ``tls`` each host gets its own SSL context (``tls.for_host``); else every host uses ``ssl_context``.
    """
    connections = max(4, jobs * 2 + 4)

    def make(context: ssl.SSLContext) -> httpx.AsyncBaseTransport:
        transport = httpx.AsyncHTTPTransport(verify=context)
        # httpx does not let us choose httpcore's network backend; the pool it built is swapped for an equal one
        # that uses the large-read backend (httpx 0.28 keeps it in ``_pool``).
        if hasattr(transport, "_pool"):
            transport._pool = httpcore.AsyncConnectionPool(
                ssl_context=context,
                max_connections=connections,
                max_keepalive_connections=connections,
                keepalive_expiry=30.0,
                network_backend=_LargeReadBackend(),
            )
        return transport

    if tls is not None:
        transport: httpx.AsyncBaseTransport = _PerHostTLSTransport(tls, make)
    else:
        transport = make(ssl_context or make_ssl_context(insecure, ca_cert))
    return httpx.AsyncClient(
        auth=auth,
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        follow_redirects=True,
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )


def candidate_schemes(registry: str, *, plain_http: bool = False, insecure: bool = False) -> tuple[str, ...]:
    """The schemes to try for ``registry``, in order (protocols.md §3)."""
    if plain_http:
        return ("http",)
    if insecure or is_loopback_host(registry):
        return ("https", "http")
    return ("https",)


def redact_url(url: str | httpx.URL) -> str:
    """The URL without userinfo, fit for error messages."""
    parts = urlsplit(str(url))
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _timeout_text(exc: httpx.TimeoutException) -> str:
    """Which timeout expired and its value (the request carries httpx's timeouts), e.g. ``read timeout 30 s``."""
    phase = {
        httpx.ConnectTimeout: "connect",
        httpx.ReadTimeout: "read",
        httpx.WriteTimeout: "write",
        httpx.PoolTimeout: "pool",
    }.get(type(exc))
    try:
        seconds = exc.request.extensions.get("timeout", {}).get(phase) if phase else None
    except RuntimeError:  # no request attached
        seconds = None
    if phase is None or seconds is None:
        return "timed out"
    return f"timed out ({phase} timeout {seconds:g} s)"


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return _timeout_text(exc)
    elif isinstance(exc, httpx.ConnectError):
        kind = "cannot connect"
    elif isinstance(exc, httpx.RemoteProtocolError):
        kind = "connection broken"
    else:
        kind = "transport error"
    detail = str(exc).strip() or type(exc).__name__
    return f"{kind} ({detail})"


@contextlib.contextmanager
def mapped_errors(method: str, url: str | httpx.URL) -> Iterator[None]:
    """Turn httpx transport exceptions raised inside into TransportError naming ``method`` and ``url``."""
    try:
        yield
    except httpx.TransportError as exc:
        raise TransportError(f"{method} {redact_url(url)}: {_describe(exc)}") from exc
    except httpx.InvalidURL as exc:
        raise TransportError(f"{method} {redact_url(url)}: invalid URL ({exc})") from exc
