"""``create_app(config)``: the one place that wires configuration, storage, access control, routes and errors.

::

    from regtool.server import ServerConfig, create_app
    app = create_app(ServerConfig(root=Path("/var/lib/regtool")))   # any ASGI server can run it

Errors: handlers and the store raise ``ApiError``; it is rendered here as ``{"errors": [{code, message,
detail}]}`` with its status. Unknown paths answer 404 and wrong methods 405, in the same envelope. A full disk
answers 507 (``_os_error``).
"""

from __future__ import annotations

import errno
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from regtool.protocol.errcodes import ErrorCode, RegistryErrorItem, encode_v2_errors
from regtool.server.auth.base import AccessController
from regtool.server.auth.setup import AccessSetup, access_from_config
from regtool.server.config import ServerConfig
from regtool.server.context import ServerContext
from regtool.server.errors import ApiError
from regtool.server.middleware import RegistryMiddleware
from regtool.server.purge import PurgeMiddleware, UploadPurger
from regtool.server.routes import build_routes
from regtool.server.storage.driver import StorageDriver
from regtool.server.storage.filesystem import FilesystemDriver
from regtool.server.storage.inmemory import InMemoryDriver
from regtool.server.storage.registry import Registry

__all__ = ["create_app", "error_response", "make_driver"]

logger = logging.getLogger("regtool.server")


def make_driver(config: ServerConfig) -> StorageDriver:
    if config.storage == "inmemory":
        return InMemoryDriver()
    assert config.root is not None  # ServerConfig checks it
    config.root.mkdir(parents=True, exist_ok=True)
    return FilesystemDriver(config.root)


def error_response(error: ApiError) -> Response:
    body = encode_v2_errors([RegistryErrorItem(error.code.code, error.message, error.detail)])
    return Response(body, status_code=error.status, headers=error.headers, media_type="application/json")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = ApiError(
            ErrorCode.UNSUPPORTED,
            f"method {request.method} not allowed on {request.url.path[:200]}",
            headers=dict(exc.headers or {}),
        )
    elif exc.status_code == 404:
        error = ApiError(ErrorCode.UNSUPPORTED, f"no such endpoint {request.url.path[:200]}", status=404)
    else:
        error = ApiError(ErrorCode.UNSUPPORTED, exc.detail, status=exc.status_code)
    return error_response(error)


_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


async def _os_error(request: Request, exc: Exception) -> Response:
    # faults (issue 6): a full disk is the operator's problem, not a bug: 507 Insufficient Storage with a clear
    # message. The stores write to temp files or upload sessions first, so what failed leaves nothing corrupt.
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        reason = "disk quota exceeded" if exc.errno == errno.EDQUOT else "no space left on device"
        message = f"storage full ({reason}) while handling {request.method} {request.url.path[:200]}"
        logger.warning("%s", message)
        return error_response(ApiError(ErrorCode.UNKNOWN, message, status=507))
    raise exc


def create_app(config: ServerConfig, *, access: AccessController | None = None) -> Starlette:
    """Build the registry application for ``config`` (``access`` overrides the controller the config asks for)."""
    # issue 5: the access controller (and the token endpoint's route) the configuration asks for.
    setup = access_from_config(config) if access is None else AccessSetup(access)
    driver = make_driver(config)
    registry = Registry(driver)
    middleware = [Middleware(RegistryMiddleware, config=config)]
    if config.upload_purge_age is not None:
        # faults (issue 6): abandoned upload sessions are purged after this age (checked as requests arrive).
        middleware.append(Middleware(PurgeMiddleware, purger=UploadPurger(registry, config.upload_purge_age)))
    app = Starlette(
        routes=[*build_routes(config), *setup.routes],
        middleware=middleware,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, OSError: _os_error},
    )
    app.router.redirect_slashes = False
    app.state.context = ServerContext(config, driver, registry, setup.controller)
    return app
