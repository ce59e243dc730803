"""How the library reports progress: a small Protocol the CLI implements (rich bars, JSON lines, nothing).

Library code never prints; it calls these methods. ``key`` identifies one transfer (usually a digest).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import httpx

    from regtool.manifest import Manifest

__all__ = ["NullProgress", "Progress", "add_http_events", "report_image"]


class Progress(Protocol):
    def start(self, key: str, description: str, total: int | None) -> None:
        """A transfer of ``total`` bytes (None if unknown) begins."""

    def advance(self, key: str, nbytes: int) -> None:
        """``nbytes`` more bytes of ``key`` were transferred."""

    def finish(self, key: str, *, status: str = "done") -> None:
        """The transfer ended: ``done``, ``skipped`` (already present), ``mounted`` or ``failed``."""

    def event(self, name: str, **fields: Any) -> None:
        """Anything else worth telling: ``retry``, ``protocol``, ``summary``, ..."""


class NullProgress:
    """Reports nothing."""

    def start(self, key: str, description: str, total: int | None) -> None:
        pass

    def advance(self, key: str, nbytes: int) -> None:
        pass

    def finish(self, key: str, *, status: str = "done") -> None:
        pass

    def event(self, name: str, **fields: Any) -> None:
        pass


def report_image(progress: Progress, manifest: Manifest) -> None:
    """An ``image`` event: the blobs ``manifest`` is made of, so a reader of the events (a timeline) can tell the
    config's transfer from the layers'."""
    config = manifest.config
    progress.event(
        "image",
        digest=str(manifest.digest),
        config=None if config is None else str(config.digest),
        layers=[str(layer.digest) for layer in manifest.layers],
    )


_STARTED = "regtool.started"
_REALM = re.compile(r'^\s*bearer\b.*?\brealm="([^"]*)"', re.IGNORECASE)

Hook = Callable[..., Awaitable[None]]


def add_http_events(http: httpx.AsyncClient, progress: Callable[[], Progress]) -> None:
    """Report every request ``http`` sends as an ``http`` event once its response headers are in: ``method``,
    ``url``, ``status``, ``seconds`` since it was sent, and a Bearer challenge's ``realm`` (the token endpoint).

    httpx calls its event hooks for each request of an auth flow and redirect, and for the token requests sent
    through the same client, so this sees every API request; blob bodies move over ``http.client`` (blobfetch)
    and are timed by their transfer's start and finish instead. ``progress`` is asked at each response, so the
    client's current renderer gets it.
    """

    async def on_request(request: httpx.Request) -> None:
        request.extensions[_STARTED] = time.monotonic()

    async def on_response(response: httpx.Response) -> None:
        from regtool.client.net.transport import redact_url

        request = response.request
        started = request.extensions.get(_STARTED)
        seconds = time.monotonic() - started if isinstance(started, float) else 0.0
        fields: dict[str, Any] = {
            "method": request.method,
            "url": redact_url(request.url),
            "status": response.status_code,
            "seconds": round(seconds, 6),
        }
        if response.status_code == 401:
            for value in response.headers.get_list("WWW-Authenticate"):
                match = _REALM.match(value)
                if match:
                    fields["realm"] = match.group(1)
                    break
        progress().event("http", **fields)

    hooks: dict[str, list[Hook]] = {"request": [on_request], "response": [on_response]}
    for name, added in hooks.items():
        http.event_hooks.setdefault(name, []).extend(added)
