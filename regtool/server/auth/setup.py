"""The access controller (and the token endpoint's route) that a ``ServerConfig`` asks for.

- neither ``htpasswd`` nor ``token_auth``: allow everything (the default);
- ``htpasswd`` alone: Basic auth against the file;
- ``token_auth``: Bearer tokens from the built-in ``/token`` endpoint (users from ``htpasswd`` when given), which
  also takes the OAuth2 ``POST`` form and issues refresh tokens (docker's identity tokens);
- ``token_auth`` with a ``token_cert`` and no ``token_key``: Bearer tokens from an external token server at
  ``token_realm``, trusted through ``token_cert`` (distribution's ``rootcertbundle``); no endpoint of its own;

``anonymous_pull`` lets clients without credentials read, and ``auth_acl`` narrows what users may do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.routing import BaseRoute, Route

from regtool.server.auth.base import AccessController, AllowAll
from regtool.server.auth.basic import BasicController
from regtool.server.auth.htpasswd import Htpasswd
from regtool.server.auth.jwt import SigningKey, TokenVerifier
from regtool.server.auth.policy import AccessPolicy
from regtool.server.auth.token import TOKEN_PATH, TokenController, TokenIssuer
from regtool.server.config import ServerConfig

__all__ = ["AccessSetup", "access_from_config"]


@dataclass(frozen=True)
class AccessSetup:
    """The controller for every handler, and routes to add to the app (the token endpoint)."""

    controller: AccessController
    routes: list[BaseRoute] = field(default_factory=list)
    issuer: TokenIssuer | None = None


def access_from_config(config: ServerConfig) -> AccessSetup:
    """Build the access control ``config`` describes; UsageError when a file it names cannot be used."""
    if config.htpasswd is None and not config.token_auth:
        return AccessSetup(AllowAll())
    htpasswd = Htpasswd.load(config.htpasswd) if config.htpasswd is not None else None
    if config.auth_acl is not None:
        policy = AccessPolicy.load(config.auth_acl, anonymous_pull=config.anonymous_pull)
    else:
        policy = AccessPolicy(anonymous_pull=config.anonymous_pull)
    if not config.token_auth:
        assert htpasswd is not None
        return AccessSetup(BasicController(htpasswd, config.token_service, policy))
    key: SigningKey | None
    if config.token_key is not None and config.token_cert is not None:
        key = SigningKey.load(config.token_key, config.token_cert)
        verifier = TokenVerifier.load(config.token_cert)
    elif config.token_cert is not None:
        key, verifier = None, TokenVerifier.load(config.token_cert)
    else:
        key = SigningKey.generate()
        verifier = key.verifier()
    issuer = TokenIssuer(
        key,
        verifier=verifier,
        htpasswd=htpasswd,
        policy=policy,
        issuer=config.token_issuer,
        service=config.token_service,
        ttl=config.token_ttl,
        realm=config.token_realm,
    )
    if key is None:
        return AccessSetup(TokenController(issuer), [], issuer)
    route = Route(TOKEN_PATH, issuer.endpoint, methods=["GET", "POST"], name="auth.token")
    return AccessSetup(TokenController(issuer), [route], issuer)
