"""Registry authentication as an ``httpx.Auth`` flow: Basic, and the Bearer token flow (protocols.md §4.5).

The flow sends a request as is (or with a cached token for its scope); on a 401 it reads the challenges:

- ``Bearer realm=...,service=...,scope=...``: GET the realm *as given* with ``service`` and one ``scope``
  parameter per scope (Basic credentials on that request when we have them, anonymous otherwise), take
  ``token`` or ``access_token``, cache it per (realm, service, scopes) until ``expires_in`` runs out, and send
  the request again with ``Authorization: Bearer``.
- ``Basic``: send the credentials on this and every later request to that host.

The scope of a request is derived from its path and method (``repository:<name>:pull`` for reads,
``pull,push`` for writes, ``delete`` for DELETE, ``registry:catalog:*`` for the catalog, plus ``pull`` on the
``from`` repository of a cross-repository mount) and merged with the scope the challenge names.

Credentials are per registry host: those given for that host (``use_for``: a copy's source and target
credentials), else the explicit ones given to the Client, else whatever ``lookup`` finds for the host (the
environment, docker's config.json or its credential helpers; see ``credentials.py``). Tokens are fetched through
the bound client (``bind``) outside the request's own flow, so an unreachable or broken token endpoint is an
AuthError naming the realm, and concurrent requests for one scope share one fetch. A 401 on a request that carried
a token (``insufficient_scope``, ``invalid_token``: expired or revoked) leads to one fresh token for the wider
scope and one retry. A credential helper's secret beginning an OAuth2 exchange (username ``<token>``, an identity
token) is sent as ``grant_type=refresh_token`` in a POST to the realm.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from urllib.parse import unquote

import httpx

from regtool.client.net.challenge import Challenge, ChallengeError, parse_challenges
from regtool.client.net.credentials import Credentials
from regtool.client.net.transport import redact_url
from regtool.client.threads import in_thread
from regtool.errors import AuthError
from regtool.reference import registry_api_host

__all__ = ["Credentials", "RegistryAuth", "request_scopes"]

# The repository is everything before the endpoint's own tail: a name may hold "manifests" or "blobs" itself.
_V2_PATH_RE = re.compile(
    r"^/v2/(?P<name>.+)/(?:manifests/[^/]+|blobs/(?:uploads(?:/[^/]*)?|[^/]+)|tags/list|referrers/[^/]+)/?$"
)
_MIN_EXPIRY = 60.0
_EXPIRY_MARGIN = 10.0


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at: float


def request_scopes(request: httpx.Request) -> tuple[str, ...]:
    """The token scopes a v2 request needs, derived from its method and path."""
    path = unquote(request.url.path)
    method = request.method.upper()
    if path.rstrip("/") == "/v2/_catalog":
        return ("registry:catalog:*",)
    match = _V2_PATH_RE.match(path)
    if match is None:
        return ()
    name = match.group("name")
    if method in {"GET", "HEAD"}:
        actions = "pull"
    elif method == "DELETE":
        actions = "delete"
    else:
        actions = "pull,push"
    scopes = [f"repository:{name}:{actions}"]
    source = request.url.params.get("from")
    if source and request.url.params.get("mount"):
        scopes.append(f"repository:{source}:pull")
    return tuple(scopes)


CredentialLookup = Callable[[str], Credentials | None]


class RegistryAuth(httpx.Auth):
    """Basic and Bearer auth for registries; one instance per Client (it holds the token cache).

    ``credentials`` apply to every host that has none of its own (``use_for``); without them ``lookup(host)`` is
    asked once per host.
    """

    def __init__(self, credentials: Credentials | None = None, *, lookup: CredentialLookup | None = None) -> None:
        self.credentials = credentials
        self._lookup = lookup
        self._per_host: dict[str, Credentials] = {}
        self._found: dict[str, Credentials | None] = {}
        self._lookup_lock = threading.Lock()
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}
        self._bearer_hosts: dict[str, tuple[str, str]] = {}  # host -> (realm, service)
        self._basic_hosts: set[str] = set()
        self._http: httpx.AsyncClient | None = None
        self._fetch_locks: dict[tuple[str, str, tuple[str, ...]], asyncio.Lock] = {}

    def bind(self, http: httpx.AsyncClient) -> None:
        """The client that token requests go through (the Client binds its own)."""
        self._http = http

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("RegistryAuth works with httpx.AsyncClient only")

    def use_for(self, registry: str, credentials: Credentials) -> None:
        """Use ``credentials`` for ``registry`` (``name[:port]``), before anything else given or found."""
        for host in {registry, registry_api_host(registry)}:
            self._per_host[host] = credentials

    def credentials_for(self, host: str) -> Credentials | None:
        """The credentials for registry ``host`` (``name[:port]``): its own (``use_for``), else explicit, else what
        ``lookup`` found."""
        own = self._per_host.get(host)
        if own is not None:
            return own
        if self.credentials is not None:
            return self.credentials
        if self._lookup is None:
            return None
        with self._lookup_lock:
            if host not in self._found:
                self._found[host] = self._lookup(host)
            return self._found[host]

    async def _credentials(self, host: str) -> Credentials | None:
        if host in self._per_host or self.credentials is not None or self._lookup is None or host in self._found:
            return self.credentials_for(host)
        # A credential helper is a subprocess: keep it off the event loop.
        return await in_thread(self.credentials_for, host)

    def _cached(self, host: str, scopes: tuple[str, ...]) -> str | None:
        if host in self._basic_hosts:
            credentials = self._per_host.get(host) or (
                self._found.get(host) if self.credentials is None else self.credentials
            )
            return credentials.basic_header() if credentials is not None else None
        known = self._bearer_hosts.get(host)
        if known is None:
            return None
        token = self._tokens.get((*known, scopes))
        if token is None or token.expires_at <= time.monotonic():
            return None
        return f"Bearer {token.value}"

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if "Authorization" in request.headers:
            yield request
            return
        host = request.url.netloc.decode("ascii")
        scopes = request_scopes(request)
        cached = self._cached(host, scopes)
        known = self._bearer_hosts.get(host)
        if cached is None and known is not None and scopes:
            # A host known to want a token gets one before the request goes (as docker and containerd do): sent
            # without, an upload's body would go out whole only to be refused, and a server that answers 401
            # without reading it (Go's net/http) resets the connection, so the 401 is never seen.
            cached = f"Bearer {(await self._token(host, *known, scopes, refused=None)).value}"
        if cached is not None:
            request.headers["Authorization"] = cached
        response = yield request
        if response.status_code != 401:
            return
        challenges = self._challenges(response, host)
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
        if bearer is not None:
            realm = bearer.params["realm"]
            service = bearer.params.get("service", "")
            wanted = tuple(dict.fromkeys([*scopes, *bearer.params.get("scope", "").split()]))
            # A token that was just refused (insufficient_scope, invalid_token) is not asked for again.
            token = await self._token(host, realm, service, wanted, refused=request.headers.get("Authorization"))
            self._bearer_hosts[host] = (realm, service)
            # Cache under the derived scopes too, so the next request of this kind goes out with the token.
            self._tokens[(realm, service, scopes)] = token
            request.headers["Authorization"] = f"Bearer {token.value}"
            yield request
            return
        if any(c.scheme == "basic" for c in challenges) and "Authorization" not in request.headers:
            credentials = await self._credentials(host)
            if credentials is None:
                return
            self._basic_hosts.add(host)
            request.headers["Authorization"] = credentials.basic_header()
            yield request

    @staticmethod
    def _challenges(response: httpx.Response, host: str) -> list[Challenge]:
        challenges: list[Challenge] = []
        values = response.headers.get_list("WWW-Authenticate")
        malformed = 0
        for value in values:
            try:
                challenges.extend(parse_challenges(value))
            except ChallengeError:
                malformed += 1
        if values and malformed == len(values):
            raise AuthError(f"registry {host} answered 401 with a malformed WWW-Authenticate challenge")
        return challenges

    async def _token(
        self, host: str, realm: str, service: str, scopes: tuple[str, ...], *, refused: str | None
    ) -> _Token:
        key = (realm, service, scopes)
        lock = self._fetch_locks.setdefault(key, asyncio.Lock())
        async with lock:
            token = self._tokens.get(key)
            if token is not None and token.expires_at > time.monotonic() and f"Bearer {token.value}" != refused:
                return token
            credentials = await self._credentials(host)
            token = await self._fetch_token(realm, service, scopes, credentials)
            self._tokens[key] = token
            return token

    async def _fetch_token(
        self, realm: str, service: str, scopes: tuple[str, ...], credentials: Credentials | None
    ) -> _Token:
        request = self._token_request(realm, service, scopes, credentials)
        if self._http is None:
            raise RuntimeError("RegistryAuth.bind(client) must be called before a token is needed")
        where = redact_url(realm)
        try:
            response = await self._http.send(request, auth=None)
        except httpx.TransportError as exc:
            detail = type(exc).__name__ if not str(exc).strip() else str(exc).strip()
            raise AuthError(f"token endpoint {where} unreachable: {detail}") from None
        return self._parse_token(response, realm)

    def _token_request(
        self, realm: str, service: str, scopes: tuple[str, ...], credentials: Credentials | None
    ) -> httpx.Request:
        try:
            url = httpx.URL(realm)
        except httpx.InvalidURL:
            raise AuthError(f"token realm {redact_url(realm)!r} is not a valid URL") from None
        if url.scheme not in {"http", "https"} or not url.host:
            raise AuthError(f"token realm {redact_url(realm)} is not an http(s) URL")
        if credentials is not None and credentials.is_identity_token:
            # OAuth2 refresh grant (distribution's token spec, "oauth.md"): docker does this for identity tokens.
            form = {"grant_type": "refresh_token", "refresh_token": credentials.password, "client_id": "regtool"}
            if service:
                form["service"] = service
            if scopes:
                form["scope"] = " ".join(scopes)
            return httpx.Request("POST", url, data=form)
        params: list[tuple[str, str | int | float | bool | None]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", scope) for scope in scopes)
        headers = {}
        if credentials is not None:
            headers["Authorization"] = credentials.basic_header()
        return httpx.Request("GET", url.copy_merge_params(params), headers=headers)

    @staticmethod
    def _parse_token(response: httpx.Response, realm: str) -> _Token:
        where = redact_url(realm)
        if response.status_code in {401, 403}:
            raise AuthError(f"token request to {where} refused: HTTP {response.status_code} (check the credentials)")
        if response.status_code != 200:
            raise AuthError(f"token request to {where} failed: HTTP {response.status_code}")
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise AuthError(f"token response from {where} is not JSON") from None
        value = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise AuthError(f"token response from {where} has no token")
        if any(ch in value for ch in "\r\n\x00") or not value.isascii():
            raise AuthError(f"token response from {where} holds a token that cannot go in a header")
        expires_in = data.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) else 0
        lifetime = max(_MIN_EXPIRY, lifetime)
        return _Token(value, time.monotonic() + lifetime - _EXPIRY_MARGIN)
