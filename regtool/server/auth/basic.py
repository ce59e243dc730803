"""HTTP Basic access control against an htpasswd file, as distribution's ``auth: htpasswd`` does it.

Every request must carry ``Authorization: Basic`` with a user and password of the file; an authenticated user
may do what the policy (``policy.py``) allows, which without an ACL file is everything, as in distribution, and
is refused with 403 DENIED otherwise. A request without valid
credentials gets 401 UNAUTHORIZED with ``WWW-Authenticate: Basic realm="<realm>"``. The v1 API uses the same
controller, so a docker engine in standalone mode (Basic on every request) is served as it expects.
"""

from __future__ import annotations

import base64
import binascii

from anyio import to_thread
from starlette.requests import Request

from regtool.protocol.errcodes import ErrorCode
from regtool.server.auth.base import Access
from regtool.server.auth.htpasswd import Htpasswd
from regtool.server.auth.policy import AccessPolicy
from regtool.server.errors import ApiError

__all__ = ["BasicController", "authenticate_basic", "basic_credentials", "check_rights"]


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """The user and password of the request's ``Authorization: Basic`` header, or None when it has none.

    A header that is not valid Basic (bad base64, no ``:``) counts as none.
    """
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        return None
    return user, password


async def authenticate_basic(htpasswd: Htpasswd, request: Request) -> str | None:
    """The user name when the request carries valid Basic credentials for ``htpasswd``, else None."""
    found = basic_credentials(request)
    if found is None:
        return None
    user, password = found
    ok = await to_thread.run_sync(htpasswd.check, user, password)
    return user if ok else None


def check_rights(
    policy: AccessPolicy, request: Request, user: str | None, accesses: list[Access], *, realm: str
) -> None:
    """Let ``user`` (None: no valid Basic credentials) through, or raise 401 with a Basic challenge / 403 DENIED.

    Anonymous clients get what the policy gives them (``anonymous`` lines of an ACL, or pulls everywhere with
    anonymous pull), as under token auth; where nothing is asked for (the base ``/v2/``), a read when anonymous
    pull is on.
    """
    if user is None:
        if accesses and all(policy.allowed(None, a.type, a.name, frozenset({a.action})) for a in accesses):
            return
        if not accesses and policy.anonymous_pull and request.method in {"GET", "HEAD"}:
            return
        raise ApiError(
            ErrorCode.UNAUTHORIZED,
            "authentication required",
            headers={"WWW-Authenticate": f'Basic realm="{_quote(realm)}"'},
        )
    refused = [a for a in accesses if not policy.allowed(user, a.type, a.name, frozenset({a.action}))]
    if refused:
        raise ApiError(ErrorCode.DENIED, f"requested access to the resource is denied: {refused[0].scope}")


class BasicController:
    """``AccessController`` for ``serve --htpasswd FILE`` (without ``--token-auth``).

    Without ``htpasswd`` nobody can authenticate and only what the policy gives anonymous clients is allowed (the
    web view of a token-auth registry that has no users).
    """

    def __init__(self, htpasswd: Htpasswd | None, realm: str = "regtool", policy: AccessPolicy | None = None) -> None:
        self.htpasswd = htpasswd
        self.realm = realm
        self.policy = policy or AccessPolicy()

    async def user(self, request: Request) -> str | None:
        """The user of the request's valid Basic credentials, else None."""
        return await authenticate_basic(self.htpasswd, request) if self.htpasswd is not None else None

    async def authorize(self, request: Request, accesses: list[Access]) -> None:
        check_rights(self.policy, request, await self.user(request), accesses, realm=self.realm)

    async def permitted(self, request: Request, accesses: list[Access]) -> list[Access]:
        """The accesses ``authorize`` would let through one by one, with one password check for them all."""
        user = await self.user(request)
        kept: list[Access] = []
        for access in accesses:
            try:
                check_rights(self.policy, request, user, [access], realm=self.realm)
            except ApiError:
                continue
            kept.append(access)
        return kept


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
