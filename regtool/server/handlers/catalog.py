"""``GET /v2/_catalog[?n=&last=]`` (Docker, not OCI): repository names, sorted, with ``Link`` paging.

Only the repositories the caller may pull are listed (``auth.base.permitted``): under an ACL a user must not learn
the names of repositories they cannot read. Paging applies to that filtered list.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from regtool.protocol import v2
from regtool.server.auth.base import Access, permitted
from regtool.server.handlers.base import authorize, context, json_response, run_sync
from regtool.server.handlers.pagination import paginate

__all__ = ["catalog"]


async def catalog(request: Request) -> Response:
    await authorize(request, Access.catalog())
    ctx = context(request)
    names = await run_sync(ctx.registry.repositories)
    allowed = await permitted(ctx.access, request, [Access.pull(name) for name in names])
    names = [access.name for access in allowed]
    page, n, following = paginate(request, names)
    headers = {}
    if n is not None and following is not None:
        headers["Link"] = v2.format_link_next(v2.catalog_path(n, following))
    return json_response({"repositories": page}, headers=headers)
