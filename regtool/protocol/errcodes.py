"""Registry error codes, their HTTP status, and the two error envelopes.

v2 (distribution ``registry/api/v2/errors.go``, OCI spec.md "Error Codes"):
``{"errors": [{"code": "...", "message": "...", "detail": ...}]}``.
v1 (docker-registry ``toolkit.api_error``): ``{"error": "<message>"}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "ErrorCode",
    "RegistryErrorItem",
    "decode_v1_error",
    "decode_v2_errors",
    "encode_v1_error",
    "encode_v2_errors",
]


class ErrorCode(Enum):
    """Each member's value is ``(code, default HTTP status, default message)``."""

    BLOB_UNKNOWN = ("BLOB_UNKNOWN", 404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = ("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")
    DIGEST_INVALID = ("DIGEST_INVALID", 400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = (
        "MANIFEST_BLOB_UNKNOWN",
        400,
        "manifest references a manifest or blob unknown to registry",
    )
    MANIFEST_INVALID = ("MANIFEST_INVALID", 400, "manifest invalid")
    MANIFEST_UNKNOWN = ("MANIFEST_UNKNOWN", 404, "manifest unknown to registry")
    NAME_INVALID = ("NAME_INVALID", 400, "invalid repository name")
    NAME_UNKNOWN = ("NAME_UNKNOWN", 404, "repository name not known to registry")
    SIZE_INVALID = ("SIZE_INVALID", 400, "provided length did not match content length")
    UNAUTHORIZED = ("UNAUTHORIZED", 401, "authentication required")
    DENIED = ("DENIED", 403, "requested access to the resource is denied")
    UNSUPPORTED = ("UNSUPPORTED", 405, "the operation is unsupported")
    TOOMANYREQUESTS = ("TOOMANYREQUESTS", 429, "too many requests")
    # Docker's own codes, outside the OCI list.
    TAG_INVALID = ("TAG_INVALID", 400, "manifest tag did not match URI")
    MANIFEST_UNVERIFIED = ("MANIFEST_UNVERIFIED", 400, "manifest failed signature verification")
    RANGE_INVALID = ("RANGE_INVALID", 416, "invalid content range")
    PAGINATION_NUMBER_INVALID = ("PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested")
    MANIFEST_TOO_LARGE = ("SIZE_INVALID", 413, "manifest too large")
    UNKNOWN = ("UNKNOWN", 500, "unknown error")
    UNAVAILABLE = ("UNAVAILABLE", 503, "service unavailable")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]

    @property
    def default_message(self) -> str:
        return self.value[2]


@dataclass(frozen=True, slots=True)
class RegistryErrorItem:
    code: str
    message: str
    detail: Any = field(default=None)


def encode_v2_errors(items: list[RegistryErrorItem]) -> bytes:
    body = [
        {"code": i.code, "message": i.message, **({"detail": i.detail} if i.detail is not None else {})} for i in items
    ]
    return json.dumps({"errors": body}).encode()


def decode_v2_errors(body: bytes) -> list[RegistryErrorItem]:
    """Best-effort decode of a v2 error body; returns [] for anything that is not the envelope."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return []
    if not isinstance(data, dict) or not isinstance(data.get("errors"), list):
        return []
    items = []
    for entry in data["errors"]:
        if isinstance(entry, dict) and isinstance(entry.get("code"), str):
            message = entry.get("message")
            items.append(
                RegistryErrorItem(entry["code"], message if isinstance(message, str) else "", entry.get("detail"))
            )
    return items


def encode_v1_error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def decode_v1_error(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return None
