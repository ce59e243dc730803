"""The one error type v2 handlers and the registry store raise; ``app`` renders it as the JSON envelope."""

from __future__ import annotations

from typing import Any

from regtool.errors import RegtoolError
from regtool.protocol.errcodes import ErrorCode

__all__ = ["ApiError"]


class ApiError(RegtoolError):
    """A registry error: ``code`` picks the envelope code and the default status; ``status`` overrides it.

    ``headers`` are added to the error response (e.g. ``WWW-Authenticate``, ``Allow``, ``Content-Range``).
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        detail: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or code.default_message)
        self.code = code
        self.message = message or code.default_message
        self.detail = detail
        self.status = status or code.status
        self.headers = headers or {}
