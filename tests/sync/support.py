"""Looking at a registry from a sync test: tags and digests over plain HTTP, requests counted by kind."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import httpx

from regtool import mediatypes as mt
from regtool.server.config import RequestEvent

__all__ = ["digest_at", "kinds", "tags_at"]

ACCEPT = {"Accept": mt.MANIFEST_ACCEPT}


def tags_at(url: str, repository: str) -> list[str]:
    """The repository's tags, sorted; [] when it does not exist."""
    response = httpx.get(f"{url}/v2/{repository}/tags/list", timeout=30)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return sorted(response.json().get("tags") or [])


def digest_at(url: str, repository: str, reference: str) -> str | None:
    """The digest the registry serves for ``reference``, None when absent."""
    response = httpx.head(f"{url}/v2/{repository}/manifests/{reference}", headers=ACCEPT, timeout=30)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def kinds(events: Iterable[RequestEvent]) -> Counter[str]:
    """``METHOD kind`` for each request: kind is ``manifests``, ``blobs``, ``uploads``, ``tags``, ``ping`` ..."""
    counted: Counter[str] = Counter()
    for event in events:
        parts = event.path.rstrip("/").split("/")
        if event.path.rstrip("/") == "/v2":
            kind = "ping"
        elif parts[-1] == "_catalog":
            kind = "_catalog"
        elif "uploads" in parts:
            kind = "uploads"
        elif len(parts) >= 3:
            kind = parts[-2]
        else:
            kind = event.path
        counted[f"{event.method} {kind}"] += 1
    return counted
