"""Listing: a repository's tags and a registry's catalog, following ``Link: <...>; rel="next"`` pagination."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import httpx

from regtool.client.net.transport import redact_url
from regtool.client.v2.api import RegistryAPI, json_body
from regtool.errors import ProtocolError
from regtool.protocol import v2
from regtool.reference import Reference

__all__ = ["MAX_PAGES", "list_repositories", "list_tags", "pages"]

MAX_PAGES = 10_000


async def pages(
    api: RegistryAPI,
    url: str,
    *,
    what: str,
    expect: Iterable[int] = (200,),
    first: httpx.Response | None = None,
) -> AsyncIterator[httpx.Response]:
    """Each page's response from ``url`` on, following ``Link: <...>; rel="next"`` (relative to the page).

    A response whose status is in ``expect`` but is not 200 (a 404 the caller accepts) is yielded and ends the walk.
    ``first`` is ``url``'s response when it was fetched already (``RegistryAPI.first_request``).
    """
    seen_urls: set[str] = set()
    next_url: str | None = url
    while next_url is not None:
        if next_url in seen_urls or len(seen_urls) >= MAX_PAGES:
            raise ProtocolError(f"{what}: pagination does not end (at {redact_url(next_url)})")
        seen_urls.add(next_url)
        if first is not None:
            response, first = first, None
        else:
            response = await api.send("GET", next_url, what=what, expect=expect)
        yield response
        following = v2.parse_link_next(response.headers.get("Link")) if response.status_code == 200 else None
        next_url = str(response.url.join(following)) if following else None


async def _paged(api: RegistryAPI, registry: str, first_path: str, key: str, what: str) -> list[str]:
    names: list[str] = []
    # The first page may be the registry's first request, in place of the ping.
    located = await api.first_request("GET", registry, first_path, what=what)
    first = located[0] if located is not None else None
    start = str(first.request.url) if first is not None else await api.base_url(registry) + first_path
    async for response in pages(api, start, what=what, first=first):
        url = str(response.request.url)
        data = json_body(response, what)
        values = data.get(key) if isinstance(data, dict) else None
        if values is None:
            values = []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ProtocolError(f"{what}: '{key}' is not a list of strings (from {redact_url(url)})")
        names.extend(values)
    return names


async def list_tags(api: RegistryAPI, repository: Reference) -> list[str]:
    """Every tag of ``repository`` in the registry's order."""
    return await _paged(
        api, repository.registry, v2.tags_path(repository.repository), "tags", f"tags of {repository.repository_ref}"
    )


async def list_repositories(api: RegistryAPI, registry: str) -> list[str]:
    """Every repository name in ``registry``'s catalog."""
    return await _paged(api, registry, v2.catalog_path(), "repositories", f"catalog of {registry}")
