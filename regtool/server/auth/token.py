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
4. OAuth2 (distribution's ``oauth.md``): ``POST /token`` with a form of ``grant_type=password`` (``username``,
   ``password``) or ``grant_type=refresh_token`` (``refresh_token``), plus ``service`` and ``scope``, answers
   ``{"access_token", "token_type", "expires_in", "issued_at", "scope"}``. A refresh token comes back with
   ``access_type=offline`` (password grant), on every refresh grant (the same one), and on ``GET`` with
   ``offline_token=true`` and valid Basic credentials: docker stores it as an identity token.

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
from urllib.parse import parse_qs

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from regtool.protocol.errcodes import ErrorCode
from regtool.server.auth.base import Access
from regtool.server.auth.basic import BasicController, authenticate_basic, basic_credentials
from regtool.server.auth.htpasswd import Htpasswd
from regtool.server.auth.jwt import LEEWAY_SECONDS, InvalidToken, SigningKey, TokenVerifier
from regtool.server.auth.policy import AccessPolicy
from regtool.server.errors import ApiError

__all__ = ["REFRESH_TTL", "TOKEN_PATH", "OAuthError", "ResourceScope", "TokenController", "TokenIssuer", "parse_scopes"]

TOKEN_PATH = "/token"
REFRESH_TTL = 30 * 24 * 3600
# Marks a refresh token (claim ``token_use``); the controller never takes one as an access token.
_REFRESH_USE = "refresh"
# An OAuth2 form is a handful of short fields; anything bigger is not one.
_MAX_FORM_BYTES = 64 * 1024


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


class OAuthError(Exception):
    """A refused OAuth2 token request: the HTTP status, the RFC 6749 ``error`` code and a message for people."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class TokenIssuer:
    """Signs tokens for the endpoint and checks them for the controller (one key, one issuer, one service).

    ``ttl`` is the lifetime of access tokens, ``refresh_ttl`` that of refresh tokens (seconds). Without a ``key``
    it issues nothing: tokens come from an external token server at ``realm`` and ``verifier`` (its root bundle)
    checks them, as distribution's ``auth.token`` does.
    """

    def __init__(
        self,
        key: SigningKey | None,
        *,
        verifier: TokenVerifier | None = None,
        htpasswd: Htpasswd | None,
        policy: AccessPolicy,
        issuer: str = "regtool",
        service: str = "regtool",
        ttl: int = 300,
        realm: str | None = None,
        refresh_ttl: int = REFRESH_TTL,
    ) -> None:
        if verifier is None:
            if key is None:
                raise ValueError("a token issuer needs a signing key or a verifier")
            verifier = key.verifier()
        self.key = key
        self.verifier = verifier
        self.htpasswd = htpasswd
        self.policy = policy
        self.issuer = issuer
        self.service = service
        self.ttl = max(60, ttl)
        self.realm = realm
        self.refresh_ttl = max(60, refresh_ttl)

    @property
    def refresh_audience(self) -> str:
        # A refresh token is meant for this token endpoint, not for the registry: with an audience that is not the
        # service, any verifier of access tokens (ours, or distribution given our certificate) refuses it.
        return f"{self.service}#refresh"

    def realm_for(self, request: Request) -> str:
        """The configured realm, else this server's own ``/token`` as the client reached it."""
        if self.realm:
            return self.realm
        return f"{request.url.scheme}://{request.url.netloc}{TOKEN_PATH}"

    def grant(self, user: str | None, scopes: list[ResourceScope]) -> list[ResourceScope]:
        """The part of ``scopes`` the policy gives ``user`` (None: anonymous) now; scopes it refuses entirely drop."""
        granted: list[ResourceScope] = []
        for scope in scopes:
            actions = self.policy.allowed(user, scope.type, scope.name, scope.actions)
            if actions:
                granted.append(ResourceScope(scope.type, scope.name, actions))
        return granted

    def issue(self, user: str | None, scopes: list[ResourceScope], now: float | None = None) -> dict[str, Any]:
        """The token response body for ``user`` (None: anonymous) asking for ``scopes``."""
        return self._access_token(user, self.grant(user, scopes), now)

    def _access_token(self, user: str | None, granted: list[ResourceScope], now: float | None) -> dict[str, Any]:
        issued = int(now if now is not None else time.time())
        access = [{"type": s.type, "name": s.name, "actions": sorted(s.actions)} for s in granted]
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": issued + self.ttl,
            "nbf": issued - LEEWAY_SECONDS,
            "iat": issued,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        token = self._signing_key().sign(claims)
        return {"token": token, "access_token": token, "expires_in": self.ttl, "issued_at": _rfc3339(issued)}

    def issue_refresh(self, user: str, now: float | None = None) -> str:
        """A refresh token for ``user``: who and which service only, never any access rights (no ``access``)."""
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.refresh_audience,
            "exp": issued + self.refresh_ttl,
            "nbf": issued - LEEWAY_SECONDS,
            "iat": issued,
            "jti": secrets.token_hex(16),
            "token_use": _REFRESH_USE,
        }
        return self._signing_key().sign(claims)

    def _signing_key(self) -> SigningKey:
        if self.key is None:
            # The token endpoint is not routed without a key; nothing else signs.
            raise RuntimeError("this registry verifies tokens from an external token server and issues none")
        return self.key

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``; InvalidToken when it is not from a trusted key, for another service or
        issuer, or expired.

        A refresh token is refused here: it is only good at the token endpoint (``redeem_refresh``).
        """
        claims = self.verifier.verify(token, audience=self.service, issuer=self.issuer)
        if "token_use" in claims:
            raise InvalidToken("not an access token")
        return claims

    def redeem_refresh(self, token: str) -> str:
        """The user a refresh token of ours speaks for; OAuthError (401 ``invalid_grant``) when it cannot be used.

        The user must still be in the htpasswd file; what they get is decided by the policy at each redemption.
        """
        try:
            # Our access tokens pass the audience check too, so that they are told apart by name below.
            claims = self.verifier.verify(token, audience=[self.refresh_audience, self.service], issuer=self.issuer)
            if claims.get("token_use") != _REFRESH_USE or claims.get("aud") != self.refresh_audience:
                raise InvalidToken("not a refresh token of this server")
        except InvalidToken as exc:
            raise OAuthError(401, "invalid_grant", f"invalid refresh token: {exc}") from None
        user = claims.get("sub")
        if not isinstance(user, str) or self.htpasswd is None or user not in self.htpasswd.users:
            raise OAuthError(401, "invalid_grant", "invalid refresh token: its user is not known to this server")
        return user

    async def endpoint(self, request: Request) -> Response:
        """``/token``: ``GET`` is docker's token request, ``POST`` the OAuth2 form (``oauth``)."""
        if request.method == "POST":
            return await self.oauth(request)
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
        # docker login asks with offline_token=true and keeps the refresh token as an identity token instead of
        # the password. Anonymous clients have no identity to keep.
        if user is not None and request.query_params.get("offline_token", "").lower() == "true":
            body["refresh_token"] = self.issue_refresh(user)
        return _json(body)

    async def oauth(self, request: Request) -> Response:
        """``POST /token``: the OAuth2 password and refresh-token grants; errors as RFC 6749 §5.2 bodies."""
        try:
            form = await _read_form(request)
            body = await self._grant_form(form)
        except OAuthError as exc:
            return _oauth_error(exc, self.service)
        return _json(body)

    async def _grant_form(self, form: dict[str, list[str]]) -> dict[str, Any]:
        grant_type = _field(form, "grant_type")
        if grant_type not in {"password", "refresh_token"}:
            message = f"grant_type {grant_type[:50]!r} is not supported: use password or refresh_token"
            raise OAuthError(400, "unsupported_grant_type", message)
        # oauth.md requires service (refresh tokens are bound to it); client_id is only for auditing: not required.
        service = _field(form, "service")
        if service != self.service:
            raise OAuthError(400, "invalid_request", f"unknown service {service[:100]!r}")
        refresh: str | None
        if grant_type == "password":
            user = await self._password_user(_field(form, "username"), _field(form, "password"))
            refresh = self.issue_refresh(user) if _optional(form, "access_type") == "offline" else None
        else:
            refresh = _field(form, "refresh_token")
            user = self.redeem_refresh(refresh)
        granted = self.grant(user, parse_scopes(form.get("scope", [])))
        body = self._access_token(user, granted, None)
        del body["token"]  # the OAuth2 answer names it access_token only
        body["token_type"] = "Bearer"
        body["scope"] = " ".join(str(s) for s in granted)
        if refresh is not None:
            # oauth.md: the refresh grant hands back the refresh token it was given.
            body["refresh_token"] = refresh
        return body

    async def _password_user(self, user: str, password: str) -> str:
        ok = self.htpasswd is not None and await to_thread.run_sync(self.htpasswd.check, user, password)
        if not ok:
            # 401 rather than RFC 6749's 400: containerd then falls back to GET, and clients say "check the
            # credentials" for it; the body still carries the OAuth2 error code.
            raise OAuthError(401, "invalid_grant", "invalid username or password")
        return user


def _rfc3339(moment: int) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _read_form(request: Request) -> dict[str, list[str]]:
    """The ``application/x-www-form-urlencoded`` body; OAuthError 400 when it is something else or too big.

    Parsed here (not ``request.form()``): that needs python-multipart, and a token form is only a few fields.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > _MAX_FORM_BYTES:
            raise OAuthError(400, "invalid_request", f"the form is larger than {_MAX_FORM_BYTES} bytes")
    try:
        return parse_qs(data.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise OAuthError(400, "invalid_request", "the form is not valid URL-encoded UTF-8") from None


def _optional(form: dict[str, list[str]], name: str) -> str | None:
    """The one value of ``name``, None when absent; RFC 6749 §3.2 forbids sending a parameter twice."""
    values = form.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise OAuthError(400, "invalid_request", f"parameter {name} given more than once")
    return values[0]


def _field(form: dict[str, list[str]], name: str) -> str:
    """The one non-empty value of required parameter ``name``; OAuthError 400 otherwise."""
    value = _optional(form, name)
    if not value:
        raise OAuthError(400, "invalid_request", f"missing parameter {name}")
    return value


def _oauth_error(exc: OAuthError, realm: str) -> Response:
    # Both shapes in one body: OAuth2 clients read error/error_description, docker and containerd read the
    # registry's errors envelope and show its message.
    code = ErrorCode.UNAUTHORIZED if exc.status == 401 else ErrorCode.UNSUPPORTED
    body = {
        "error": exc.error,
        "error_description": exc.description,
        "errors": [{"code": code.code, "message": exc.description}],
    }
    headers = {"Cache-Control": "no-store"}
    if exc.status == 401:
        headers["WWW-Authenticate"] = f'Basic realm="{_quote(realm)}"'
    return Response(json.dumps(body).encode(), exc.status, headers=headers, media_type="application/json")


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body).encode(), media_type="application/json", headers={"Cache-Control": "no-store"})


class TokenController:
    """``AccessController`` for ``serve --token-auth``.

    ``basic`` checks Basic credentials against the same users and policy as the token endpoint, for clients that
    cannot fetch tokens: v1 clients, and browsers on the web view.
    """

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer
        self.basic = BasicController(issuer.htpasswd, issuer.service, issuer.policy)

    async def permitted(self, request: Request, accesses: list[Access]) -> list[Access]:
        """What a valid bearer token grants, plus what the policy gives the token's user (None for no token).

        Listings use it: a catalog token names only ``registry:catalog:*``, so the repositories the caller may pull
        come from the policy for the user the token speaks for, as the token endpoint would decide them.
        """
        path = request.url.path
        if path.startswith("/v1/") or path == "/_ping":
            return await self.basic.permitted(request, accesses)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return []
        try:
            claims = self.issuer.claims(token.strip())
        except InvalidToken:
            return []
        granted = _granted(claims)
        subject = claims.get("sub")
        user = subject if isinstance(subject, str) and subject else None
        policy = self.issuer.policy
        return [
            a
            for a in accesses
            if a.action in granted.get((a.type, a.name), frozenset())
            or policy.allowed(user, a.type, a.name, frozenset({a.action}))
        ]

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
        await self.basic.authorize(request, accesses)

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
