"""end-8a/8b: ``GET /v2/<name>/tags/list[?n=&last=]``, sorted, with a ``Link`` to the next page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from regtool.protocol import v2
from regtool.server.auth.base import Access
from regtool.server.handlers.base import authorize, context, json_response, repository, run_sync
from regtool.server.handlers.pagination import paginate

__all__ = ["list_tags"]


async def list_tags(request: Request) -> Response:
    name = repository(request)
    await authorize(request, Access.pull(name))
    proxy = context(request).proxy
    if proxy is not None:
        tags = await proxy.tags(request, name)
    else:
        tags = await run_sync(context(request).registry.tags, name)
    page, n, following = paginate(request, tags)
    headers = {}
    if n is not None and following is not None:
        headers["Link"] = v2.format_link_next(v2.tags_path(name, n, following))
    return json_response({"name": name, "tags": page}, headers=headers)
