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
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from urllib.parse import unquote

import httpx

from regtool.client.challenge import Challenge, ChallengeError, parse_challenges
from regtool.client.transport import redact_url
from regtool.errors import AuthError

__all__ = ["Credentials", "RegistryAuth", "request_scopes"]

_V2_PATH_RE = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)(?:/|$)")
_MIN_EXPIRY = 60.0
_EXPIRY_MARGIN = 10.0


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


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


class RegistryAuth(httpx.Auth):
    """Basic and Bearer auth for registries; one instance per Client (it holds the token cache)."""

    def __init__(self, credentials: Credentials | None = None) -> None:
        self.credentials = credentials
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}
        self._bearer_hosts: dict[str, tuple[str, str]] = {}  # host -> (realm, service)
        self._basic_hosts: set[str] = set()

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("RegistryAuth works with httpx.AsyncClient only")

    def header_for(self, method: str, url: str) -> str | None:
        """The Authorization value a request would carry now (from the caches), or None."""
        request = httpx.Request(method, url)
        return self._cached(request.url.netloc.decode("ascii"), request_scopes(request))

    def _cached(self, host: str, scopes: tuple[str, ...]) -> str | None:
        if host in self._basic_hosts and self.credentials is not None:
            return self.credentials.basic_header()
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
        if cached is not None:
            request.headers["Authorization"] = cached
        response = yield request
        if response.status_code != 401:
            return
        challenges = self._challenges(response)
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
        if bearer is not None:
            realm = bearer.params["realm"]
            service = bearer.params.get("service", "")
            wanted = tuple(dict.fromkeys([*scopes, *bearer.params.get("scope", "").split()]))
            key = (realm, service, wanted)
            token = self._tokens.get(key)
            if token is None or token.expires_at <= time.monotonic():
                token_response = yield self._token_request(realm, service, wanted)
                await token_response.aread()
                token = self._parse_token(token_response, realm)
                self._tokens[key] = token
            self._bearer_hosts[host] = (realm, service)
            # Cache under the derived scopes too, so the next request of this kind goes out with the token.
            self._tokens[(realm, service, scopes)] = token
            request.headers["Authorization"] = f"Bearer {token.value}"
            yield request
            return
        if any(c.scheme == "basic" for c in challenges) and self.credentials is not None:
            self._basic_hosts.add(host)
            request.headers["Authorization"] = self.credentials.basic_header()
            yield request

    @staticmethod
    def _challenges(response: httpx.Response) -> list[Challenge]:
        challenges: list[Challenge] = []
        for value in response.headers.get_list("WWW-Authenticate"):
            try:
                challenges.extend(parse_challenges(value))
            except ChallengeError:
                continue
        return challenges

    def _token_request(self, realm: str, service: str, scopes: tuple[str, ...]) -> httpx.Request:
        params: list[tuple[str, str | int | float | bool | None]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", scope) for scope in scopes)
        headers = {}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic_header()
        try:
            url = httpx.URL(realm)
        except httpx.InvalidURL as exc:
            raise AuthError(f"token realm {realm!r} is not a valid URL") from exc
        if url.scheme not in {"http", "https"}:
            raise AuthError(f"token realm {redact_url(realm)} is not an http(s) URL")
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
        except (ValueError, UnicodeDecodeError):
            raise AuthError(f"token response from {where} is not JSON") from None
        value = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise AuthError(f"token response from {where} has no token")
        expires_in = data.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) else 0
        lifetime = max(_MIN_EXPIRY, lifetime)
        return _Token(value, time.monotonic() + lifetime - _EXPIRY_MARGIN)
