"""Purging abandoned upload sessions: a client that started an upload and never finished it leaves
``uploads/<id>/`` behind; after ``ServerConfig.upload_purge_age`` seconds without activity it is removed.

Activity is the later of the session's start (``info``) and the last write to its ``data``, so an upload that is
still receiving bytes is never purged, however long it runs. A purged session answers 404 BLOB_UPLOAD_UNKNOWN,
which tells a resuming client to open a new one.

The app runs the purge itself, with no background task to manage: ``PurgeMiddleware`` starts a pass (in a worker
thread) on the first request after each ``interval``, under any ASGI server and with lifespan off.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import anyio
from anyio import to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from regtool.server.storage import paths
from regtool.server.storage.driver import PathNotFound
from regtool.server.storage.registry import Registry

__all__ = ["PurgeMiddleware", "UploadPurger", "idle_uploads", "purge_uploads"]

logger = logging.getLogger(__name__)


def _last_activity(registry: Registry, upload_id: str) -> float | None:
    """When the session last did something (unix time), or None when it is gone or unreadable."""
    driver = registry.driver
    times: list[float] = []
    try:
        info = json.loads(driver.get_content(paths.upload_info(upload_id)))
        if isinstance(info, dict) and isinstance(info.get("started"), int | float):
            times.append(float(info["started"]))
    except (PathNotFound, ValueError):
        pass
    try:
        times.append(driver.stat(paths.upload_data(upload_id)).modified)
    except PathNotFound:
        pass
    if not times:
        # Neither file (yet): judge by the directory, which a session being created has just made.
        try:
            times.append(driver.stat(paths.upload_dir(upload_id)).modified)
        except PathNotFound:
            return None
    return max(times)


def idle_uploads(registry: Registry, max_age: float, *, now: float | None = None) -> list[str]:
    """The ids of the upload sessions idle for more than ``max_age`` seconds, sorted."""
    current = time.time() if now is None else now
    try:
        entries = registry.driver.list(paths.UPLOADS)
    except PathNotFound:
        return []
    idle: list[str] = []
    for upload_id in sorted(entries):
        if not paths.UPLOAD_ID_RE.match(upload_id):
            continue
        last = _last_activity(registry, upload_id)
        if last is not None and current - last > max_age:
            idle.append(upload_id)
    return idle


def purge_uploads(registry: Registry, max_age: float, *, now: float | None = None) -> list[str]:
    """Remove every upload session idle for more than ``max_age`` seconds; returns the ids removed."""
    removed = idle_uploads(registry, max_age, now=now)
    for upload_id in removed:
        registry.cancel_upload(upload_id)
    if removed:
        logger.info("purged %d abandoned upload session(s) idle for more than %gs", len(removed), max_age)
    return removed


class UploadPurger:
    """Runs ``purge_uploads`` at most once per ``interval`` seconds (default: half the age, at most 10 minutes)."""

    def __init__(
        self,
        registry: Registry,
        max_age: float,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.max_age = max_age
        self.interval = interval if interval is not None else min(max(max_age / 2, 0.05), 600.0)
        self._clock = clock
        self._next = clock()
        self._lock = anyio.Lock()

    async def maybe_run(self) -> list[str]:
        """Purge when the interval has passed since the last pass (other callers meanwhile skip it)."""
        if self._clock() < self._next or self._lock.locked():
            return []
        async with self._lock:
            self._next = self._clock() + self.interval
            return await to_thread.run_sync(purge_uploads, self.registry, self.max_age)


class PurgeMiddleware:
    """ASGI middleware that gives the purger a chance to run before each HTTP request."""

    def __init__(self, app: ASGIApp, purger: UploadPurger) -> None:
        self.app = app
        self.purger = purger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                await self.purger.maybe_run()
            except Exception:
                # Purging is housekeeping: a failure is logged and never fails the request that triggered it.
                logger.exception("purging abandoned uploads failed")
        await self.app(scope, receive, send)
