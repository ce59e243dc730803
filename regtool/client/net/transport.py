"""The one place that builds the client's ``httpx.AsyncClient`` and maps httpx exceptions to regtool errors.

- Connections: httpx sends over the Client's one ``connections.ConnectionPool``, which the blob threads use too,
  so the connection that fetched a manifest carries the next blob, and TLS (verified by default; per host as
  docker's certs.d says) and timeouts are set in one place.
- Schemes: https first. Plain http is tried after https only for loopback hosts (as docker does) or when
  ``insecure``; ``plain_http`` means http only. Once https produced an HTTP response, http is never tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from regtool.__about__ import __version__
from regtool.client.net.connections import ConnectionPool, PoolTransport
from regtool.client.net.schemes import candidate_schemes
from regtool.client.tasks import first_error, task_group
from regtool.errors import TransportError

if TYPE_CHECKING:
    import urllib.request
    from http.client import HTTPResponse

__all__ = ["USER_AGENT", "build_http_client", "candidate_schemes", "first_in_order", "mapped_errors", "redact_url"]

T = TypeVar("T")

USER_AGENT = f"regtool/{__version__}"


def build_http_client(*, pool: ConnectionPool, auth: httpx.Auth | None = None) -> httpx.AsyncClient:
    """An AsyncClient whose requests go over ``pool``'s connections (the ones blob bodies use too).

    The pool carries the TLS settings per host and applies the timeouts (connect, then each read and write);
    httpx is given the same values, which its errors then name.
    """
    # The pool's connections do TLS with the contexts of ``net/tls.py``: httpx's own transport, its TLS context
    # (its certifi bundle) and httpcore under it are never built.
    return httpx.AsyncClient(
        auth=auth,
        transport=PoolTransport(pool),
        timeout=httpx.Timeout(pool.timeout, connect=pool.connect_timeout),
        follow_redirects=True,
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
        cookies=_NoCookies(),
    )


class _NoCookies(http.cookiejar.CookieJar):
    """A jar that keeps nothing. Registries authenticate with headers (Basic, Bearer), not cookies, and docker's
    client keeps none; while httpx's jar, to look for Set-Cookie, copies every response's headers into an email
    message, a large part of what a small request costs the client."""

    def extract_cookies(self, response: HTTPResponse, request: urllib.request.Request) -> None:
        return None


async def first_in_order(
    candidates: Sequence[str], attempt: Callable[[str], Awaitable[T | None]]
) -> tuple[str, T] | None:
    """Run ``attempt`` for every candidate at once; the first candidate, in the given order, whose attempt gave
    a result (None means it failed), with that result; None when all failed.

    The order is a preference, not a race: a later candidate wins only once every earlier one has failed, so
    http is used only where https did not answer. But the attempts overlap, so a loopback registry on plain
    HTTP costs one round trip, not a failed TLS handshake and then a second connection. Attempts still running
    when the answer is known are cancelled.
    """
    results: dict[str, T | None] = {}
    finished = {candidate: asyncio.Event() for candidate in candidates}

    async def run(candidate: str) -> None:
        try:
            results[candidate] = await attempt(candidate)
        finally:
            finished[candidate].set()

    try:
        async with task_group() as group:
            tasks = [group.create_task(run(candidate)) for candidate in candidates]
            for candidate in candidates:
                await finished[candidate].wait()
                result = results.get(candidate)
                if result is not None:
                    for task in tasks:
                        task.cancel()
                    return candidate, result
    except BaseExceptionGroup as errors:
        raise first_error(errors) from None
    return None


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
