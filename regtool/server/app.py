"""``create_app(config)``: the one place that wires configuration, storage, access control, routes and errors.

::

    from regtool.server import ServerConfig, create_app
    app = create_app(ServerConfig(root=Path("/var/lib/regtool")))   # any ASGI server can run it

Errors: handlers and the store raise ``ApiError``; it is rendered here as ``{"errors": [{code, message,
detail}]}`` with its status. Unknown paths answer 404 and wrong methods 405, in the same envelope. A storage
fault the server can name (a full disk, a read-only file system, a permission error) answers 507 and logs one
line (``_os_error``, ``errors.storage_error``).

Filesystem storage is checked when the app is built: the root is created if needed and, unless the registry is
read-only, a file is written and removed through the driver, so storage that cannot take a push is refused at
start (``UsageError``) instead of failing every upload later.
"""

from __future__ import annotations

import logging
import uuid

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from regtool.errors import UsageError
from regtool.protocol.errcodes import ErrorCode, RegistryErrorItem, encode_v2_errors
from regtool.server.auth.base import AccessController
from regtool.server.auth.setup import AccessSetup, access_from_config
from regtool.server.cache import open_cache
from regtool.server.config import ServerConfig
from regtool.server.context import ServerContext
from regtool.server.errors import ApiError, storage_error
from regtool.server.handlers import debug
from regtool.server.health import StorageHealth
from regtool.server.middleware import RegistryMiddleware
from regtool.server.purge import PurgeMiddleware, UploadPurger
from regtool.server.routes import build_routes
from regtool.server.storage.driver import StorageDriver
from regtool.server.storage.filesystem import FilesystemDriver
from regtool.server.storage.inmemory import InMemoryDriver
from regtool.server.storage.registry import Registry

__all__ = ["check_writable", "create_app", "create_debug_app", "error_response", "make_driver"]

logger = logging.getLogger("regtool.server")


def make_driver(config: ServerConfig) -> StorageDriver:
    """The storage ``config`` asks for; UsageError naming the root when it cannot be used."""
    if config.storage == "inmemory":
        return InMemoryDriver()
    if config.storage == "s3":
        # Imported here: botocore is loaded only by a registry that uses object storage.
        from regtool.server.storage.s3 import S3Driver

        assert config.s3 is not None  # ServerConfig checks it
        s3 = S3Driver(config.s3)
        s3.check_reachable()
        return s3
    root = config.root
    assert root is not None  # ServerConfig checks it
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"storage root {root} exists and is not a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot create storage root {root}: {exc.strerror or exc}") from None
    driver = FilesystemDriver(root)
    if not config.read_only:
        check_writable(driver, str(root))
    return driver


def check_writable(driver: StorageDriver, where: str) -> None:
    """Write and remove a small file through ``driver``; UsageError when the storage refuses it."""
    # The same path a push takes (temp file, fsync, rename), so a read-only mount or a root owned by someone
    # else is found here, once, rather than as an error on every upload.
    probe = f"_write-check-{uuid.uuid4().hex}"
    try:
        driver.put_content(probe, b"")
        driver.delete(probe)
    except OSError as exc:
        raise UsageError(
            f"storage root {where} is not writable ({exc.strerror or exc}); a read-only registry can serve it"
        ) from None


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


async def _os_error(request: Request, exc: Exception) -> Response:
    # A storage fault is the operator's problem, not a bug: 507 with a clear message and one log line. Any other
    # OSError goes on to the middleware, which logs it with its traceback and answers 500.
    error = storage_error(exc, request.method, request.url.path) if isinstance(exc, OSError) else None
    if error is None:
        raise exc
    logger.warning("%s", error.message)
    return error_response(error)


def create_app(config: ServerConfig, *, access: AccessController | None = None) -> Starlette:
    """Build the registry application for ``config`` (``access`` overrides the controller the config asks for)."""
    # The access controller (and the token endpoint's route) the configuration asks for.
    setup = access_from_config(config) if access is None else AccessSetup(access)
    driver = make_driver(config)
    cache = open_cache(config)
    registry = Registry(driver, cache)
    metrics = None
    if config.metrics:
        from regtool.server.metrics import ServerMetrics

        metrics = ServerMetrics(cache)
    health = StorageHealth(
        driver, config.storage, interval=config.health_storage_interval, threshold=config.health_storage_threshold
    )
    middleware = [Middleware(RegistryMiddleware, config=config, metrics=metrics)]
    if config.gc_interval is not None:
        # The garbage collector's passes in this process, from the first request on (server/gc/online.py).
        from regtool.server.gc.online import GcMiddleware, online_collector

        middleware.append(Middleware(GcMiddleware, collector=online_collector(config, registry)))
    if config.upload_purge_age is not None:
        # Abandoned upload sessions are purged after this age (checked as requests arrive).
        purger = UploadPurger(registry, config.upload_purge_age, interval=config.upload_purge_interval)
        middleware.append(Middleware(PurgeMiddleware, purger=purger))
    proxy = None
    if config.proxy_remotes:
        # A pull-through cache (server/proxy/): the server's only use of the client library, imported only here.
        from regtool.server.proxy.store import ProxyStore

        proxy = ProxyStore(config, registry)
    app = Starlette(
        lifespan=None if proxy is None else proxy.lifespan,
        routes=[
            # First, so no other route (the web view's pages) can take these paths.
            Route("/debug/health", debug.health, methods=["GET"]),
            Route("/metrics", debug.metrics, methods=["GET"]),
            *build_routes(config),
            *setup.routes,
        ],
        middleware=middleware,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, OSError: _os_error},
    )
    app.router.redirect_slashes = False
    app.state.context = ServerContext(
        config, driver, registry, setup.controller, health=health, metrics=metrics, proxy=proxy
    )
    return app


def create_debug_app(app: Starlette) -> Starlette:
    """The debug listener's app (``ServerConfig.debug_addr``): /metrics and /debug/health of ``app``'s server.

    It shares ``app``'s context (the same counters and health check) and answers /metrics to any peer: whoever
    reaches this address is trusted, as with distribution's ``http.debug.addr``.
    """
    debug_app = Starlette(
        routes=[
            Route("/debug/health", debug.health, methods=["GET"]),
            Route("/metrics", debug.metrics, methods=["GET"]),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
    )
    debug_app.state.context = app.state.context
    debug_app.state.debug_listener = True
    return debug_app
