"""Listing: a repository's tags and a registry's catalog, following ``Link: <...>; rel="next"`` pagination."""

from __future__ import annotations

from regtool.client.net.transport import redact_url
from regtool.client.v2.api import RegistryAPI, json_body
from regtool.errors import ProtocolError
from regtool.protocol import v2
from regtool.reference import Reference

__all__ = ["MAX_PAGES", "list_repositories", "list_tags"]

MAX_PAGES = 10_000


async def _paged(api: RegistryAPI, registry: str, first_path: str, key: str, what: str) -> list[str]:
    base = await api.base_url(registry)
    url: str | None = base + first_path
    seen_urls: set[str] = set()
    names: list[str] = []
    pages = 0
    while url is not None:
        if url in seen_urls or pages >= MAX_PAGES:
            raise ProtocolError(f"{what}: pagination does not end (at {redact_url(url)})")
        seen_urls.add(url)
        pages += 1
        response = await api.send("GET", url, what=what)
        data = json_body(response, what)
        values = data.get(key) if isinstance(data, dict) else None
        if values is None:
            values = []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ProtocolError(f"{what}: '{key}' is not a list of strings (from {redact_url(url)})")
        names.extend(values)
        following = v2.parse_link_next(response.headers.get("Link"))
        url = str(response.url.join(following)) if following else None
    return names


async def list_tags(api: RegistryAPI, repository: Reference) -> list[str]:
    """Every tag of ``repository`` in the registry's order."""
    return await _paged(
        api, repository.registry, v2.tags_path(repository.repository), "tags", f"tags of {repository.repository_ref}"
    )


async def list_repositories(api: RegistryAPI, registry: str) -> list[str]:
    """Every repository name in ``registry``'s catalog."""
    return await _paged(api, registry, v2.catalog_path(), "repositories", f"catalog of {registry}")
