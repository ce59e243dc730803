"""Bearer token auth for ``serve --token-auth``: a built-in token endpoint and the controller that checks tokens.

The flow is distribution's (protocols.md §4.5):

1. A v2 request without a usable token gets 401 ``WWW-Authenticate: Bearer realm="<url>/token",
   service="<service>",scope="repository:<name>:pull,push"`` (``error="insufficient_scope"`` when a token was sent
   but lacks a right, ``error="invalid_token"`` when it is expired or not ours).
2. ``GET /token?service=..&scope=..`` with Basic credentials of the htpasswd file (or none: anonymous) answers
   ``{"token", "access_token", "expires_in", "issued_at"}``; the token grants the requested actions the policy
   allows, and wrong credentials get 401.
3. The request is repeated with ``Authorization: Bearer <token>``. A token without the right for an
   authenticated user the policy refuses gets 403 DENIED; one the policy would allow gets 401 insufficient_scope,
   so the client fetches a wider token.

Tokens are JWS (``jwt.py``) that distribution itself accepts when its ``auth.token`` trusts the certificate. The
v1 API does not speak tokens: there the controller checks Basic credentials, as a standalone v1 registry does.
"""

from __future__ import annotations

import datetime
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from regtool.protocol.errcodes import ErrorCode
from regtool.server.auth.base import Access
from regtool.server.auth.basic import authenticate_basic, basic_credentials, check_rights
from regtool.server.auth.htpasswd import Htpasswd
from regtool.server.auth.jwt import InvalidToken, SigningKey
from regtool.server.auth.policy import AccessPolicy
from regtool.server.errors import ApiError

__all__ = ["TOKEN_PATH", "ResourceScope", "TokenController", "TokenIssuer", "parse_scopes"]

TOKEN_PATH = "/token"
_LEEWAY = 5


@dataclass(frozen=True, slots=True)
class ResourceScope:
    """One parsed scope: ``repository:team/app:pull,push`` -> type, name, actions."""

    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


def parse_scopes(values: list[str]) -> list[ResourceScope]:
    """Scopes from ``scope`` query values (each may hold several, space-separated); malformed ones are dropped.

    The grammar is ``type[(class)]:name:actions``; a name may itself hold ``:`` (a registry host with a port),
    so the type ends at the first colon and the actions start after the last.
    """
    scopes: list[ResourceScope] = []
    for value in values:
        for item in value.split():
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            kind = kind.split("(", 1)[0]
            wanted = frozenset(a for a in actions.split(",") if a)
            if kind and name and wanted:
                scopes.append(ResourceScope(kind, name, wanted))
    return scopes


def _challenge_scope(accesses: list[Access]) -> str:
    grouped: dict[tuple[str, str], list[str]] = {}
    for access in accesses:
        actions = grouped.setdefault((access.type, access.name), [])
        if access.action not in actions:
            actions.append(access.action)
    return " ".join(f"{kind}:{name}:{','.join(actions)}" for (kind, name), actions in grouped.items())


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class TokenIssuer:
    """Signs tokens for the endpoint and checks them for the controller (one key, one issuer, one service)."""

    def __init__(
        self,
        key: SigningKey,
        *,
        htpasswd: Htpasswd | None,
        policy: AccessPolicy,
        issuer: str = "regtool",
        service: str = "regtool",
        ttl: int = 300,
        realm: str | None = None,
    ) -> None:
        self.key = key
        self.htpasswd = htpasswd
        self.policy = policy
        self.issuer = issuer
        self.service = service
        self.ttl = max(60, ttl)
        self.realm = realm

    def realm_for(self, request: Request) -> str:
        """The configured realm, else this server's own ``/token`` as the client reached it."""
        if self.realm:
            return self.realm
        return f"{request.url.scheme}://{request.url.netloc}{TOKEN_PATH}"

    def issue(self, user: str | None, scopes: list[ResourceScope], now: float | None = None) -> dict[str, Any]:
        """The token response body for ``user`` (None: anonymous) asking for ``scopes``."""
        issued = int(now if now is not None else time.time())
        access: list[dict[str, Any]] = []
        for scope in scopes:
            granted = self.policy.allowed(user, scope.type, scope.name, scope.actions)
            if granted:
                access.append({"type": scope.type, "name": scope.name, "actions": sorted(granted)})
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": issued + self.ttl,
            "nbf": issued - _LEEWAY,
            "iat": issued,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        token = self.key.sign(claims)
        stamp = datetime.datetime.fromtimestamp(issued, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"token": token, "access_token": token, "expires_in": self.ttl, "issued_at": stamp}

    def claims(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The verified claims of ``token``; InvalidToken when it is not ours, for another service, or expired."""
        claims = self.key.verify(token)
        moment = now if now is not None else time.time()
        if claims.get("iss") != self.issuer or claims.get("aud") != self.service:
            raise InvalidToken("wrong issuer or audience")
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int) or not isinstance(nbf, int):
            raise InvalidToken("no expiry")
        if moment >= exp + _LEEWAY:
            raise InvalidToken("expired")
        if moment < nbf - _LEEWAY:
            raise InvalidToken("not yet valid")
        return claims

    async def endpoint(self, request: Request) -> Response:
        """``GET /token``: a token for the requested scopes; 401 for wrong credentials."""
        service = request.query_params.get("service")
        if service is not None and service != self.service:
            raise ApiError(ErrorCode.UNSUPPORTED, f"unknown service {service[:100]!r}", status=400)
        user: str | None = None
        if basic_credentials(request) is not None:
            user = await authenticate_basic(self.htpasswd, request) if self.htpasswd is not None else None
            if user is None:
                raise ApiError(
                    ErrorCode.UNAUTHORIZED,
                    "invalid username or password",
                    headers={"WWW-Authenticate": f'Basic realm="{_quote(self.service)}"'},
                )
        scopes = parse_scopes(request.query_params.getlist("scope"))
        body = self.issue(user, scopes)
        return _json(body)


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body).encode(), media_type="application/json", headers={"Cache-Control": "no-store"})


class TokenController:
    """``AccessController`` for ``serve --token-auth``."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer

    async def authorize(self, request: Request, accesses: list[Access]) -> None:
        path = request.url.path
        if path.startswith("/v1/") or path == "/_ping":
            await self._authorize_v1(request, accesses)
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._unauthorized(request, accesses, None)
        try:
            claims = self.issuer.claims(token.strip())
        except InvalidToken:
            raise self._unauthorized(request, accesses, "invalid_token") from None
        granted = _granted(claims)
        missing = [a for a in accesses if a.action not in granted.get((a.type, a.name), frozenset())]
        if not missing:
            return
        user = claims.get("sub") or None
        if user is not None:
            refused = [
                a for a in missing if not self.issuer.policy.allowed(user, a.type, a.name, frozenset({a.action}))
            ]
            if refused:
                raise ApiError(
                    ErrorCode.DENIED,
                    f"requested access to the resource is denied: {refused[0].scope}",
                )
        raise self._unauthorized(request, accesses, "insufficient_scope")

    async def _authorize_v1(self, request: Request, accesses: list[Access]) -> None:
        htpasswd = self.issuer.htpasswd
        user = await authenticate_basic(htpasswd, request) if htpasswd is not None else None
        check_rights(self.issuer.policy, request, user, accesses, realm=self.issuer.service)

    def _unauthorized(self, request: Request, accesses: list[Access], error: str | None) -> ApiError:
        params = [f'realm="{_quote(self.issuer.realm_for(request))}"', f'service="{_quote(self.issuer.service)}"']
        scope = _challenge_scope(accesses)
        if scope:
            params.append(f'scope="{_quote(scope)}"')
        if error:
            params.append(f'error="{error}"')
        message = {
            None: "authentication required",
            "invalid_token": "the bearer token is invalid or expired",
            "insufficient_scope": "the bearer token does not grant the requested access",
        }[error]
        return ApiError(ErrorCode.UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer " + ",".join(params)})


def _granted(claims: dict[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    granted: dict[tuple[str, str], frozenset[str]] = {}
    entries = claims.get("access")
    if not isinstance(entries, list):
        return granted
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if isinstance(kind, str) and isinstance(name, str) and isinstance(actions, list):
            key = (kind, name)
            granted[key] = granted.get(key, frozenset()) | frozenset(a for a in actions if isinstance(a, str))
    return granted
