"""``GET /v2/_catalog[?n=&last=]`` (Docker, not OCI): repository names, sorted, with ``Link`` paging."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from regtool.protocol import v2
from regtool.server.auth.base import Access
from regtool.server.handlers.base import authorize, context, json_response, run_sync
from regtool.server.handlers.pagination import paginate

__all__ = ["catalog"]


async def catalog(request: Request) -> Response:
    await authorize(request, Access.catalog())
    names = await run_sync(context(request).registry.repositories)
    page, n, following = paginate(request, names)
    headers = {}
    if n is not None and following is not None:
        headers["Link"] = v2.format_link_next(v2.catalog_path(n, following))
    return json_response({"repositories": page}, headers=headers)
