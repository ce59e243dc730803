"""A small registry v2 API layer over httpx, shared by pull, push and the everyday commands.

It knows where a registry lives (scheme chosen once per registry: https first, http only where allowed, never
after https answered), found by pinging ``/v2/``, or, where the caller lets it (``first_request_locates``), by the
first real request itself, sent on every allowed scheme at once: an answer that shows the v2 API (its version
header, a v2 error body, a 200 JSON object) fixes the scheme and spares the ping's round trip; any other answer is
``NoV2Answer`` and the caller asks the probe instead. It sends requests with the retry policy, and turns error
responses into regtool errors with the registry's error envelope decoded into the message:

- 404, or the codes NAME_UNKNOWN / MANIFEST_UNKNOWN / BLOB_UNKNOWN      -> NotFoundError
- 401 / 403                                                            -> AuthError
- the code DIGEST_INVALID (the bytes it got do not hash to the digest)   -> IntegrityError

``RegistryAPI.error_for`` adds what only the API knows: a 401 says where credentials were looked for and how to
log in, and a 404 from a host whose ``GET /v2/`` did not answer like a registry (no 200/401/403, no
``Docker-Distribution-API-Version``) is UnsupportedProtocolError: a web server that is no registry is exit 7 for
every command, not a "not found".
- anything else unexpected                                             -> RegistryError (status, codes)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import httpx

from regtool import mediatypes as mt
from regtool.client.net.auth import RegistryAuth
from regtool.client.net.blobfetch import BlobFetcher
from regtool.client.net.connections import BODY_SENDER, KEEP_BODY, BodySender
from regtool.client.net.ratelimit import RateLimiter
from regtool.client.net.retry import RetryBudget, RetryLog, RetryPolicy
from regtool.client.net.transport import candidate_schemes, first_in_order, mapped_errors, redact_url
from regtool.client.tasks import LARGE_WEIGHT, WeightedLimiter, transfer_weight
from regtool.client.threads import shielded
from regtool.digest import Digest
from regtool.errors import (
    AuthError,
    IntegrityError,
    NotFoundError,
    ProtocolError,
    RegistryError,
    RegtoolError,
    TransportError,
    UnsupportedProtocolError,
)
from regtool.manifest import Manifest, ManifestError, parse_manifest
from regtool.protocol import v2
from regtool.protocol.errcodes import decode_v1_error, decode_v2_errors
from regtool.reference import Reference, registry_api_host

__all__ = ["MAX_MANIFEST_BYTES", "NOT_FOUND_CODES", "NoV2Answer", "RegistryAPI", "error_for_response"]

NOT_FOUND_CODES = frozenset({"NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"})
MAX_MANIFEST_BYTES = 8 << 20
_ERROR_BODY_LIMIT = 64 << 10
# Registries whose first request may stand in for the ping, in the task (and its children) that said so.
_LOCATING: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("regtool_locating", default=frozenset())


class NoV2Answer(Exception):
    """The first request to a registry, sent in place of the ping, got no answer that shows the v2 API (or none at
    all, or one to retry): nothing was changed anywhere, and the caller decides v2 or v1 by the probe, as without
    it. Never escapes ``Client``."""


def error_for_response(response: httpx.Response, what: str, body: bytes = b"") -> RegtoolError:
    """The regtool error for an unexpected ``response`` to the request described by ``what``."""
    status = response.status_code
    items = decode_v2_errors(body) if body else []
    codes = tuple(item.code for item in items)
    if items:
        detail = "; ".join(f"{i.code}: {i.message}" if i.message else i.code for i in items)
    else:
        detail = (decode_v1_error(body) if body else None) or f"HTTP {status} {response.reason_phrase}".strip()
    message = f"{what}: {detail} (HTTP {status} from {redact_url(response.request.url)})"
    if status in {401, 403} or {"UNAUTHORIZED", "DENIED"} & set(codes):
        return AuthError(message)
    if status == 404 or NOT_FOUND_CODES & set(codes):
        return NotFoundError(message)
    if "DIGEST_INVALID" in codes:
        return IntegrityError(message)
    return RegistryError(message, status=status, codes=codes)


class RegistryAPI:
    """Requests to registries through one ``httpx.AsyncClient``, with retries and error mapping."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        retry: RetryPolicy | None = None,
        plain_http: bool = False,
        insecure: bool = False,
        auth: RegistryAuth | None = None,
        fetcher: BlobFetcher | None = None,
        per_host: int | None = None,
    ) -> None:
        self.http = http
        self.retry = retry or RetryPolicy()
        self.retry_log = RetryLog()
        self.rate_limits = RateLimiter(self.retry.rate_limit_floor, progress=lambda: self.retry_log.progress)
        # At most ``per_host`` blob transfers (connections) to one registry host at a time,
        # shared by everything this API moves (pull, push, copy, each range of a split download).
        self.per_host = per_host
        self._host_slots: dict[str, WeightedLimiter] = {}
        self.auth = auth
        self.fetcher = fetcher
        self.plain_http = plain_http
        self.insecure = insecure
        self._bases: dict[str, str] = {}
        # Registries whose v2 API a real request showed (first_request_locates): no probe is needed for them.
        self._v2_shown: set[str] = set()
        self._base_locks: dict[str, asyncio.Lock] = {}
        # Bases whose GET /v2/ did not look like a registry's, with the status it answered.
        self._not_v2: dict[str, int] = {}
        # Registries that may be reached over plain HTTP although the client is not --insecure (registries.conf).
        self._insecure_registries: set[str] = set()
        # Registry -> whether it has the OCI referrers API, as it showed: a manifest PUT with a subject answered
        # with OCI-Subject or without it, a referrers GET answered 200 or 404 (client/v2/referrers.py).
        self.referrers_api: dict[str, bool] = {}
        self._upload_locks: dict[tuple[str, str, Digest], asyncio.Lock] = {}

    # -- where a registry lives ---------------------------------------------------------------------------

    def schemes(self, registry: str) -> tuple[str, ...]:
        insecure = self.insecure or registry in self._insecure_registries
        return candidate_schemes(registry, plain_http=self.plain_http, insecure=insecure)

    def allow_insecure(self, registry: str) -> None:
        """Let ``registry`` be reached over plain HTTP when https fails (its TLS is the TLSContexts' business)."""
        self._insecure_registries.add(registry)

    async def base_url(self, registry: str) -> str:
        """``scheme://host`` of ``registry``'s API, found by a GET /v2/ per scheme and then remembered."""
        known = self._bases.get(registry)
        if known is not None:
            return known
        if registry in _LOCATING.get():
            # A request that cannot stand in for the ping came first: the caller probes instead.
            raise NoV2Answer(f"registry {registry}: its first request is not one that shows v2")
        lock = self._base_locks.setdefault(registry, asyncio.Lock())
        async with lock:
            known = self._bases.get(registry)
            if known is not None:
                return known
            failures: dict[str, str] = {}
            schemes = self.schemes(registry)
            host = registry_api_host(registry)

            async def ping(scheme: str) -> httpx.Response | None:
                # Only the last scheme is retried: for the others, the next scheme is the fallback.
                last = scheme == schemes[-1]
                try:
                    url = f"{scheme}://{host}/v2/"
                    response = await self.send("GET", url, what="ping", auth=False, expect=None, retry=last)
                except TransportError as exc:
                    failures[scheme] = str(exc)
                    return None
                await response.aclose()
                return response

            answer = await first_in_order(schemes, ping)
            if answer is None:
                raise TransportError(f"registry {registry} unreachable: " + "; ".join(failures[s] for s in schemes))
            scheme, response = answer
            base = f"{scheme}://{host}"
            if response.status_code not in {200, 401, 403} and v2.API_VERSION_HEADER not in response.headers:
                self._not_v2[base] = response.status_code
            self._bases[registry] = base
            return base

    def error_for(self, response: httpx.Response, what: str, body: bytes = b"") -> RegtoolError:
        """``error_for_response``, plus a login hint on a 401 and exit 7 for a 404 from a host that is no registry."""
        error = error_for_response(response, what, body)
        url = response.request.url
        if isinstance(error, NotFoundError) and url.path.startswith("/v2/"):
            base = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"
            status = self._not_v2.get(base)
            if status is not None:
                return UnsupportedProtocolError(
                    f"{what}: {url.netloc.decode('ascii', 'replace')} is no registry v2: GET {base}/v2/ answered "
                    f"HTTP {status} without the registry API header (and {redact_url(url)} HTTP {response.status_code})"
                )
        if isinstance(error, AuthError) and response.status_code == 401:
            return AuthError(f"{error}; {self._login_hint(url.netloc.decode('ascii', 'replace'))}")
        return error

    def _login_hint(self, host: str) -> str:
        credentials = None
        if self.auth is not None:
            try:
                credentials = self.auth.credentials_for(host)
            except RegtoolError:
                credentials = None
        if credentials is not None:
            origin = "given" if credentials.source == "explicit" else f"from {credentials.source}"
            return f"the credentials {origin} for {host} were refused: check them, or run `regtool login {host}`"
        return (
            f"no credentials for {host} (looked at --username, REGTOOL_USERNAME/REGTOOL_PASSWORD, docker's "
            f"config.json and its credential helpers): run `regtool login {host}`"
        )

    def host_slot(self, url: str, size: int | None = None) -> contextlib.AbstractAsyncContextManager[object]:
        """Hold ``url``'s host's share of the ``per_host`` cap while a body of ``size`` bytes moves: ``per_host``
        large bodies at once, four small ones in the place of each (``tasks.transfer_weight``); no-op without a cap."""
        if self.per_host is None:
            return contextlib.nullcontext()
        host = httpx.URL(url).netloc.decode("ascii", "replace")
        limiter = self._host_slots.get(host)
        if limiter is None:
            limiter = self._host_slots[host] = WeightedLimiter(self.per_host * LARGE_WEIGHT)
        return limiter.hold(transfer_weight(size))

    def blob_upload_lock(self, registry: str, repository: str, digest: Digest) -> asyncio.Lock:
        """Held around one blob's upload to one repository (its HEAD first), so that images pushed or copied at
        once that share a blob (a sync's base layers) upload it once: the others wait, then find it present.
        Uploading it again and again is wasted bytes, and distribution 2.x rewrites a repository's link to a blob
        on every commit, not atomically: a manifest PUT that reads it mid-rewrite is told the blob is unknown."""
        key = (registry, repository, digest)
        lock = self._upload_locks.get(key)
        if lock is None:
            lock = self._upload_locks[key] = asyncio.Lock()
        return lock

    def preconnect(self, base: str, count: int) -> None:
        """Open connections to ``base`` (``scheme://host[:port]``) in the background, up to ``count`` idle."""
        if self.fetcher is None:
            return
        if self.per_host is not None:
            # No more than the host's cap lets move at once (``host_slot``): the rest would only be closed.
            count = min(count, self.per_host * LARGE_WEIGHT)
        url = httpx.URL(base)
        if url.host:
            self.fetcher.pool.preconnect(
                url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80), count
            )

    @contextlib.contextmanager
    def first_request_locates(self, registry: str) -> Iterator[None]:
        """Inside, the first request to ``registry`` (``first_request``) finds its base without a ping, and raises
        ``NoV2Answer`` when its answer does not show the v2 API; only for callers that catch it."""
        token = _LOCATING.set(_LOCATING.get() | {registry})
        try:
            yield
        finally:
            _LOCATING.reset(token)

    def v2_shown(self, registry: str) -> bool:
        """Whether a real request to ``registry`` showed its v2 API (so the probe would only repeat it)."""
        return registry in self._v2_shown

    async def preconnect_registry(self, registry: str, count: int) -> None:
        """``preconnect`` to ``registry``'s base (pinged for first where unknown). Where the first request is to
        find the base, to the scheme it is likely to settle on, without waiting: https where it is the only one
        allowed, else plain http, whose connects cost nothing when the registry turns out to speak TLS, where TLS
        handshakes with a plain-HTTP port would be threads spent failing."""
        if registry not in self._bases and registry in _LOCATING.get():
            schemes = self.schemes(registry)
            scheme = "http" if "http" in schemes else schemes[0]
            self.preconnect(f"{scheme}://{registry_api_host(registry)}", count)
            return
        self.preconnect(await self.base_url(registry), count)

    def remember_base(self, registry: str, base: str) -> None:
        """Record where ``registry`` lives (the probe found out already)."""
        self._bases[registry] = base

    async def url(self, registry: str, path: str) -> str:
        return await self.base_url(registry) + path

    # -- sending ----------------------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        expect: Iterable[int] | None = (200,),
        stream: bool = False,
        auth: bool = True,
        retry: bool = True,
        budget: RetryBudget | None = None,
        keep_body: bool = False,
        body_sender: BodySender | None = None,
        check: bool = True,
    ) -> httpx.Response:
        """Send a request, retrying per the policy; raise the mapped error unless the status is in ``expect``
        (``check=False``: return that response too, once its retries are spent).

        With ``stream`` the body is left unread (the caller closes the response); otherwise it is read.
        ``expect=None`` accepts any status. ``budget`` is the retries of the operation this request belongs to
        (shared with its other requests); without one the request has the policy's retries to itself.
        ``keep_body`` leaves a successful response's body on its connection, for a blob thread to read
        (``BlobFetcher.receive``); ``body_sender`` sends the request's body from a file instead of ``content``
        (``BlobFetcher.body_sender``), again on every attempt. A ``content`` stream is read once: send it with
        ``retry=False``.
        """
        accepted = None if expect is None else frozenset(expect)
        budget = budget if budget is not None else RetryBudget(self.retry)
        quota_host = httpx.URL(url).netloc.decode("ascii", "replace") if self.rate_limits.enabled else None
        while True:
            if quota_host is not None:
                await self.rate_limits.wait(quota_host)
            extensions: dict[str, object] = {}
            if keep_body:
                extensions[KEEP_BODY] = True
            if body_sender is not None:
                extensions[BODY_SENDER] = body_sender
            request = self.http.build_request(method, url, headers=headers, content=content, extensions=extensions)
            try:
                with mapped_errors(method, url):
                    if auth:
                        response = await self.http.send(request, stream=True)
                    else:
                        response = await self.http.send(request, stream=True, auth=None)
            except TransportError as exc:
                if not retry or not self.retry.allows_method(method) or budget.exhausted:
                    raise
                attempt = budget.take()
                delay = self.retry.backoff(attempt)
                self.retry_log.record(
                    f"{method} {redact_url(url)}",
                    attempt=attempt + 1,
                    delay=delay,
                    reason=_reason(exc, method, url),
                    of=budget.attempts,
                )
                await asyncio.sleep(delay)
                continue
            if quota_host is not None:
                self.rate_limits.observe(quota_host, response.headers)
            status = response.status_code
            ok = accepted is None or status in accepted
            if not ok and retry and self.retry.allows(method, status) and not budget.exhausted:
                await response.aclose()
                await self._pause_to_retry(method, url, response, budget)
                continue
            if not ok and check:
                try:
                    body = await _read_limited(response, _ERROR_BODY_LIMIT)
                finally:
                    await response.aclose()
                raise self.error_for(response, what, body)
            if not stream:
                try:
                    with mapped_errors(method, url):
                        await response.aread()
                finally:
                    await response.aclose()
            return response

    async def _pause_to_retry(self, method: str, url: str, response: httpx.Response, budget: RetryBudget) -> None:
        """Take a retry of ``budget`` for ``response``'s status, log it and wait (``Retry-After``, else backoff)."""
        attempt = budget.take()
        delay = self.retry.delay(attempt, response.headers.get("Retry-After"))
        reason = f"HTTP {response.status_code}"
        self.retry_log.record(
            f"{method} {redact_url(url)}", attempt=attempt + 1, delay=delay, reason=reason, of=budget.attempts
        )
        await asyncio.sleep(delay)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        expect: Iterable[int] = (200,),
    ) -> AsyncIterator[httpx.Response]:
        """Like ``send(stream=True)``, closing the response on exit."""
        response = await self.send(method, url, what=what, headers=headers, expect=expect, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def first_request(
        self,
        method: str,
        registry: str,
        path: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> tuple[httpx.Response, bytes] | None:
        """``method`` (GET or HEAD) ``path`` on ``registry`` in place of the ping, when ``first_request_locates``
        says so and its base is unknown: on every allowed scheme at once, the first in order that answers winning
        (as the ping). The response (closed) and its body (at most ``limit`` bytes, else all of it, which fills
        ``content``); an error status raises the mapped error. None where the request is to go the ordinary way
        (``url``)."""
        if registry in self._bases or registry not in _LOCATING.get():
            return None
        host = registry_api_host(registry)

        async def fetch(url: str, budget: RetryBudget | None = None) -> tuple[httpx.Response, bytes] | None:
            # Without a budget, sent once: the next scheme is the fallback, and after the last the probe.
            try:
                response = await self.send(
                    method,
                    url,
                    what=what,
                    headers=headers,
                    stream=True,
                    retry=budget is not None,
                    budget=budget,
                    check=False,
                )
            except TransportError:
                if budget is not None:
                    raise
                return None
            try:
                if limit is None:
                    with mapped_errors(method, url):
                        body = await response.aread()
                else:
                    body = await _read_limited(response, limit, method)
            except TransportError:
                if budget is not None:
                    raise
                return None
            finally:
                await shielded(response.aclose())
            return response, body

        answer = await first_in_order(self.schemes(registry), lambda scheme: fetch(f"{scheme}://{host}{path}"))
        if answer is None:
            raise NoV2Answer(f"{what}: no answer from {registry}")
        scheme, (response, body) = answer
        budget = RetryBudget(self.retry)
        if self.retry.allows(method, response.status_code) and not budget.exhausted:
            # The scheme is settled (it answered); the request's other attempts go the ordinary way.
            url = str(response.request.url)
            await self._pause_to_retry(method, url, response, budget)
            again = await fetch(url, budget)
            assert again is not None, "a fetch with a budget raises its transport error"
            response, body = again
        status = response.status_code
        if not _shows_v2(response, body):
            raise NoV2Answer(f"{what}: HTTP {status} from {redact_url(response.request.url)}")
        self._bases[registry] = f"{scheme}://{host}"
        self._v2_shown.add(registry)
        if status != 200:
            raise self.error_for(response, what, body[:_ERROR_BODY_LIMIT])
        return response, body

    # -- manifests --------------------------------------------------------------------------------------

    async def get_manifest(self, ref: Reference, *, accept: str = mt.MANIFEST_ACCEPT) -> Manifest:
        """GET ``ref``'s manifest (by digest when it has one, else by tag), parsed and checked.

        By digest: the bytes must hash to it. Always: the body's ``mediaType`` must agree with Content-Type,
        and a ``Docker-Content-Digest`` header must match the bytes (schema1 aside, whose header digest is of
        the unsigned payload).
        """
        path = v2.manifest_path(ref.repository, ref.reference)
        what = f"manifest {ref}"
        headers = {"Accept": accept}
        first = await self.first_request(
            "GET", ref.registry, path, what=what, headers=headers, limit=MAX_MANIFEST_BYTES + 1
        )
        if first is not None:
            response, raw = first
            url = str(response.request.url)
        else:
            url = await self.url(ref.registry, path)
            async with self.stream("GET", url, what=what, headers=headers) as response:
                raw = await _read_limited(response, MAX_MANIFEST_BYTES + 1, method="GET")
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ProtocolError(f"{what}: larger than {MAX_MANIFEST_BYTES} bytes (from {redact_url(url)})")
        content_type = response.headers.get("Content-Type")
        return check_manifest(raw, content_type, ref, url, response.headers.get(v2.CONTENT_DIGEST_HEADER))

    async def head_manifest(self, ref: Reference, *, accept: str = mt.MANIFEST_ACCEPT) -> httpx.Response:
        path = v2.manifest_path(ref.repository, ref.reference)
        what, headers = f"manifest {ref}", {"Accept": accept}
        first = await self.first_request("HEAD", ref.registry, path, what=what, headers=headers)
        if first is not None:
            return first[0]
        return await self.send("HEAD", await self.url(ref.registry, path), what=what, headers=headers)

    async def put_manifest(self, ref: Reference, manifest: Manifest) -> Digest:
        """PUT ``manifest``'s exact bytes under ``ref``'s tag (or digest); returns the digest of the bytes."""
        url = await self.url(ref.registry, v2.manifest_path(ref.repository, ref.reference))
        response = await self.send(
            "PUT",
            url,
            what=f"manifest {ref}",
            headers={"Content-Type": manifest.media_type},
            content=manifest.raw,
            expect=(200, 201, 202),
        )
        header = response.headers.get(v2.CONTENT_DIGEST_HEADER)
        if header and Digest.is_valid(header) and Digest.parse(header) != manifest.digest:
            raise IntegrityError(
                f"manifest {ref}: registry stored it as {header}, expected {manifest.digest} (at {redact_url(url)})"
            )
        if manifest.subject is not None:
            indexed = v2.OCI_SUBJECT_HEADER in response.headers
            self.referrers_api[ref.registry] = indexed
            if not indexed:
                # Without OCI-Subject the registry did not index the subject, and the spec makes the client who
                # pushed the manifest add it to the subject's tag-schema index, whichever command pushed it.
                from regtool.client.v2.referrers import write_tag_schema

                await write_tag_schema(self, ref, manifest.subject.digest, [manifest.referrer_descriptor()])
        return manifest.digest

    # -- blobs ------------------------------------------------------------------------------------------

    async def blob_size(
        self, registry: str, repository: str, digest: Digest, *, budget: RetryBudget | None = None
    ) -> int | None:
        """HEAD the blob: its size when present, None when absent (404)."""
        url = await self.url(registry, v2.blob_path(repository, str(digest)))
        response = await self.send("HEAD", url, what=f"blob {digest}", expect=(200, 404), budget=budget)
        if response.status_code == 404:
            return None
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else -1


def _shows_v2(response: httpx.Response, body: bytes) -> bool:
    """Whether an answer to a request under ``/v2/`` comes from a registry v2 API: the ping's rules (the API
    version header, a v2 error body, a 200 JSON object), the error body with any error status here (a code that
    names something of the v2 API: not found, unauthorized, too many requests)."""
    version = response.headers.get(v2.API_VERSION_HEADER)
    if version is not None and v2.API_VERSION in version.split():
        return True
    status = response.status_code
    if status != 200:
        # UNSUPPORTED is how a server without the route says so (serve with v2 off): no sign of the v2 API.
        return bool({item.code for item in decode_v2_errors(body)} - {"UNSUPPORTED"})
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


def _reason(exc: Exception, method: str, url: str) -> str:
    """What went wrong, without the ``METHOD URL:`` a TransportError's message starts with (the retry names it)."""
    text = str(exc)
    for prefix in (f"{method} {redact_url(url)}: ", f"{method} {url}: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def check_manifest(raw: bytes, content_type: str | None, ref: Reference, url: str, header: str | None) -> Manifest:
    """Parse manifest bytes fetched from ``url`` and run the integrity checks of ``get_manifest``."""
    where = redact_url(url)
    if ref.digest is not None:
        actual = Digest.of(raw, ref.digest.algorithm)
        if actual != ref.digest:
            raise IntegrityError(f"manifest {ref}: digest mismatch: content hashes to {actual} (from {where})")
    try:
        manifest = parse_manifest(raw, content_type)
    except ManifestError as exc:
        raise ProtocolError(f"manifest {ref}: {exc} (from {where})") from None
    if header and manifest.kind != "schema1" and Digest.is_valid(header):
        stated = Digest.parse(header)
        if stated.algorithm == "sha256" and stated != manifest.digest:
            raise IntegrityError(
                f"manifest {ref}: Docker-Content-Digest {stated} does not match the content ({manifest.digest}) "
                f"from {where}"
            )
    return manifest


async def _read_limited(response: httpx.Response, limit: int, method: str = "GET") -> bytes:
    chunks: list[bytes] = []
    total = 0
    with mapped_errors(method, response.request.url):
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            total += len(chunk)
            if total >= limit:
                break
    return b"".join(chunks)[:limit]


def json_body(response: httpx.Response, what: str) -> Any:
    """The response's JSON body, or ProtocolError naming ``what`` and the URL."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError(f"{what}: response is not JSON (from {redact_url(response.request.url)})") from None
