"""The route tables: v2 built from ``protocol.v2.ROUTES``, v1 and the web view's pages appended when enabled.

Repository names contain ``/``, so ``{name}`` uses Starlette's ``path`` converter (``.*``) and the fixed suffix
(``/manifests/<ref>``, ``/blobs/<digest>``, ...) anchors the match at the right end (protocols.md §4.1). The
handlers validate the name against the grammar. A disabled API has no routes, so it answers 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from regtool.protocol.v2 import ROUTES
from regtool.server.config import ServerConfig
from regtool.server.handlers import base, blobs, catalog, manifests, referrers, tags, uploads, v1

__all__ = ["build_routes", "resource", "v1_routes", "v2_routes"]


def _path(route: str) -> str:
    return ROUTES[route].replace("{name}", "{name:path}")


Endpoint = Callable[[Request], Awaitable[Response]]


def resource(path: str, name: str, **handlers: Endpoint) -> Route:
    """One route per path with a handler per method (HEAD goes to GET), so a 405 lists every allowed method."""
    table = {method.upper(): handler for method, handler in handlers.items()}
    if "GET" in table:
        table["HEAD"] = table["GET"]

    async def dispatch(request: Request) -> Response:
        return await table[request.method](request)

    return Route(path, dispatch, methods=list(table), name=name)


def v2_routes() -> list[BaseRoute]:
    """Every v2 endpoint (end-1 .. end-13, _catalog, upload DELETE)."""
    return [
        resource(_path("base"), "v2.base", get=base.v2_base),
        resource(_path("base").rstrip("/"), "v2.base.noslash", get=base.v2_base),
        resource(_path("catalog"), "v2.catalog", get=catalog.catalog),
        resource(_path("tags"), "v2.tags", get=tags.list_tags),
        resource(
            _path("manifest"),
            "v2.manifest",
            get=manifests.get_manifest,
            put=manifests.put_manifest,
            delete=manifests.delete_manifest,
        ),
        resource(_path("uploads"), "v2.uploads", post=uploads.start_upload),
        resource(_path("uploads").rstrip("/"), "v2.uploads.noslash", post=uploads.start_upload),
        resource(
            _path("upload"),
            "v2.upload",
            get=uploads.upload_status,
            patch=uploads.patch_upload,
            put=uploads.close_upload,
            delete=uploads.cancel_upload,
        ),
        resource(_path("blob"), "v2.blob", get=blobs.get_blob, delete=blobs.delete_blob),
        resource(_path("referrers"), "v2.referrers", get=referrers.list_referrers),
    ]


def v1_routes() -> list[BaseRoute]:
    """The v1 API (``handlers/v1.py``): _ping, repositories, tags, images."""
    return v1.routes()


def build_routes(config: ServerConfig) -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    if config.enable_v2:
        routes += v2_routes()
    if config.enable_v1:
        routes += v1_routes()
    if config.web:
        # After the APIs: the pages live at /, /repo/..., /-/... (or under web_prefix) and never match /v1, /v2.
        from regtool.server.web import web_routes

        routes += web_routes(config)
    return routes
