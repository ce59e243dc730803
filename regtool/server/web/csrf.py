"""CSRF protection for the pages' forms: a signed double-submit cookie, plus an Origin check.

A browser sends Basic credentials with any request to the registry, also one a foreign page makes it send, so
every form that changes state carries a token a foreign page cannot know:

- the ``regtool_csrf`` cookie holds a random value (HttpOnly, SameSite=Strict, so a cross-site POST lacks it);
- the form's hidden ``csrf`` field is HMAC(key, cookie value, user): without the server's key it cannot be made
  from the cookie, and it is good only for the user it was issued to.

The key is generated when the app starts (forms of an earlier run are refused; reloading the page fixes that).
A request whose ``Origin`` (or ``Sec-Fetch-Site``) says it comes from another site is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["COOKIE", "CsrfGuard"]

COOKIE = "regtool_csrf"
_VALUE_RE = re.compile(r"^[0-9a-f]{64}$")


class CsrfGuard:
    """Issues form tokens for a request and checks them on the POST that carries them back."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _sign(self, value: str, user: str | None) -> str:
        message = f"{value}\x00{user or ''}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, request: Request, user: str | None) -> tuple[str, str | None]:
        """The form token for this visitor, and a new cookie value to set (None when theirs is kept)."""
        value = request.cookies.get(COOKIE, "")
        if _VALUE_RE.match(value):
            return self._sign(value, user), None
        value = secrets.token_hex(32)
        return self._sign(value, user), value

    @staticmethod
    def set_cookie(response: Response, request: Request, value: str, path: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            path=path,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def check(self, request: Request, user: str | None, token: str) -> str | None:
        """None when the POST may go on, else why it is refused."""
        if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
            return "the form was sent from another site"
        origin = request.headers.get("origin")
        if origin is not None and origin != "null" and origin != f"{request.url.scheme}://{request.url.netloc}":
            return "the form was sent from another site"
        value = request.cookies.get(COOKIE, "")
        if not _VALUE_RE.match(value):
            return "the form's session cookie is missing; reload the page and try again"
        if not hmac.compare_digest(self._sign(value, user), token):
            return "the form has expired or was not issued to you; reload the page and try again"
        return None
