"""The collector inside ``regtool serve`` (``--gc-interval``): a pass every interval, in a daemon thread.

The thread starts with the first request the app serves (an app that is built and never run collects nothing)
and sleeps between passes, so a pass never delays a request. It stops with the app (the ASGI lifespan's
shutdown): a pass under way ends at its next removal, which leaves a store the next pass finishes, as a process
killed in the middle of a pass does. The grace period (``--gc-delay``) is what makes collecting under traffic
safe (see ``collector.py``). A failing pass is logged and the next one runs on time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regtool.server.config import ServerConfig
from regtool.server.gc.collector import GcOptions, collect_garbage
from regtool.server.gc.report import GcReport, Removal
from regtool.server.storage.registry import Registry

__all__ = ["GcMiddleware", "OnlineCollector", "online_collector"]

logger = logging.getLogger("regtool.server.gc")


class OnlineCollector:
    """Collects garbage every ``interval`` seconds once started; ``after_pass`` runs after each pass (other
    bounds the same schedule enforces, such as the pull-through cache's)."""

    def __init__(
        self,
        registry: Registry,
        *,
        interval: float,
        options: GcOptions,
        after_pass: Callable[[], None] | None = None,
    ) -> None:
        self.registry = registry
        self.interval = interval
        self.options = options
        self.after_pass = after_pass
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the passes (once; later calls do nothing)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="regtool-gc", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the passes; a pass under way ends at its next removal. Blocking: waits for the thread."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()

    def run_once(self) -> GcReport:
        report = collect_garbage(self.registry, self.options, on_removed=self._stop_here_if_asked)
        if self.after_pass is not None:
            self.after_pass()
        return report

    def _stop_here_if_asked(self, removal: Removal) -> None:
        if self._stop.is_set():
            raise _Stopped

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except _Stopped:
                return
            except Exception:
                logger.exception("garbage collection pass failed")


class _Stopped(Exception):
    """Raised between two removals of a pass when the server stops."""


def online_collector(config: ServerConfig, registry: Registry) -> OnlineCollector:
    """The collector ``config`` asks for (``gc_interval`` set): untagged manifests kept, as ``serve gc`` does,
    unless ``gc_delete_untagged`` (``serve gc --delete-untagged``; the grace period spares recent ones alike).

    A pull-through cache's TTL and size cap are enforced after each pass too, so they hold on a server nobody
    asks (the cache itself enforces them only as it is used). Its last uses are read from its records, which the
    running cache rewrites at most once a minute per blob: a blob used within that minute may look older here.
    """
    assert config.gc_interval is not None
    after_pass = None
    if config.proxy_remotes:
        from regtool.server.proxy.limits import enforce_cache_limits

        def after_pass() -> None:
            enforce_cache_limits(
                registry.driver, ttl=config.proxy_ttl, max_size=config.proxy_max_size, blobs=registry.blobs
            )

    options = GcOptions(delete_untagged=config.gc_delete_untagged, delay=config.gc_delay)
    return OnlineCollector(registry, interval=config.gc_interval, options=options, after_pass=after_pass)


class GcMiddleware:
    """Starts the collector with the first HTTP request, stops it with the lifespan's shutdown."""

    def __init__(self, app: ASGIApp, collector: OnlineCollector) -> None:
        self.app = app
        self.collector = collector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.collector.start()
        elif scope["type"] == "lifespan":
            receive = self._stopping_on_shutdown(receive)
        await self.app(scope, receive, send)

    def _stopping_on_shutdown(self, receive: Receive) -> Receive:
        async def watched() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await anyio.to_thread.run_sync(self.collector.stop)
            return message

        return watched
