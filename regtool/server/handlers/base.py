"""Shared handler helpers (context, validated path parameters, empty responses) and the ``/v2/`` endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from regtool import grammar
from regtool.digest import Digest
from regtool.errors import InvalidDigest
from regtool.protocol.errcodes import ErrorCode
from regtool.server.auth.base import Access
from regtool.server.context import ServerContext
from regtool.server.errors import ApiError

__all__ = [
    "authorize",
    "context",
    "empty",
    "json_response",
    "parse_digest",
    "query_digest",
    "repository",
    "require_deletable",
    "require_writable",
    "run_sync",
    "v2_base",
]

T = TypeVar("T")


def context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.context
    return ctx


async def run_sync(function: Callable[..., T], *args: Any) -> T:
    """Run blocking storage code in a worker thread."""
    return await to_thread.run_sync(function, *args)


def repository(request: Request) -> str:
    """The validated ``{name}`` path parameter (NAME_INVALID otherwise)."""
    name = str(request.path_params.get("name", ""))
    if not grammar.is_valid_name(name):
        raise ApiError(ErrorCode.NAME_INVALID, f"invalid repository name {name[:100]!r}", detail=name[:256])
    return name


def parse_digest(text: str, *, code: ErrorCode = ErrorCode.DIGEST_INVALID) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidDigest as exc:
        raise ApiError(code, str(exc), detail=text[:256]) from None


def query_digest(request: Request, key: str) -> Digest | None:
    value = request.query_params.get(key)
    return None if value is None else parse_digest(value)


def require_writable(request: Request, what: str) -> None:
    config = context(request).config
    if config.read_only:
        raise ApiError(ErrorCode.UNSUPPORTED, f"registry is read-only: cannot {what}")
    if config.proxy_remotes:
        # As distribution in proxy mode: what a cache holds is the upstream's, never a client's.
        raise ApiError(ErrorCode.UNSUPPORTED, f"registry is a pull-through cache: cannot {what}")


def require_deletable(request: Request, what: str) -> None:
    """Refuse a delete when the registry is read-only or deletes are off (distribution's storage.delete)."""
    require_writable(request, what)
    if not context(request).config.delete_enabled:
        raise ApiError(ErrorCode.UNSUPPORTED, f"deletes are disabled on this registry: cannot {what}")


async def authorize(request: Request, *accesses: Access) -> None:
    await context(request).access.authorize(request, list(accesses))


def empty(status: int, headers: dict[str, str] | None = None) -> Response:
    """A response with no body (``Content-Length: 0`` unless ``headers`` says otherwise)."""
    return Response(status_code=status, headers=headers)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None, media_type: str = ""
) -> Response:
    body = json.dumps(data, separators=(",", ":")).encode()
    return Response(body, status_code=status, headers=headers, media_type=media_type or "application/json")


async def v2_base(request: Request) -> Response:
    """end-1: ``GET /v2/`` answers 200 ``{}``; the API version header is added to every response by the app."""
    await authorize(request)
    return json_response({})
