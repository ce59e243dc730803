"""The one error type v2 handlers and the registry store raise; ``app`` renders it as the JSON envelope.

``storage_error`` names the storage faults an operator can fix (a full disk, a read-only file system, missing
permissions): they answer 507 with a one-line message instead of a 500 and a traceback.
"""

from __future__ import annotations

import errno
from typing import Any

from regtool.errors import RegtoolError
from regtool.protocol.errcodes import ErrorCode

__all__ = ["ApiError", "storage_error"]


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


# The storage faults the server can name, with what to say about them. Each one is the operator's to fix (free
# space, remount, fix ownership), not a bug in the request or in the server, so it answers 507 Insufficient
# Storage ("unable to store the representation") rather than 500. The stores write to temp files or upload
# sessions first, so what failed leaves nothing corrupt.
_STORAGE_FAULTS = {
    errno.ENOSPC: "storage full (no space left on device)",
    errno.EDQUOT: "storage full (disk quota exceeded)",
    errno.EROFS: "storage is read-only (read-only file system)",
    errno.EACCES: "storage not accessible (permission denied)",
    errno.EPERM: "storage not accessible (operation not permitted)",
    # An object store that cannot be reached or fails its requests (storage/s3.py reports them as these).
    errno.ECONNREFUSED: "storage unreachable",
    errno.EIO: "storage failed (I/O error)",
}


def storage_error(exc: OSError, method: str, path: str) -> ApiError | None:
    """The 507 ``ApiError`` for a storage fault the server can name, or None for any other OSError."""
    reason = _STORAGE_FAULTS.get(exc.errno) if exc.errno is not None else None
    if reason is None:
        return None
    return ApiError(ErrorCode.UNKNOWN, f"{reason} while handling {method} {path[:200]}", status=507)
