"""Health for load balancers: distribution's ``/debug/health`` semantics for the storage check.

The store is asked (``stat`` of the repositories directory; "not found" still means reachable) at most once per
``interval`` seconds; after ``threshold`` failures in a row the instance is unhealthy and ``/debug/health``
answers 503 with ``{"storagedriver_<kind>": "<error>"}``, until the next check that succeeds (200 ``{}``). The check
runs when a health request finds the last result older than the interval, so an instance nobody asks costs nothing
and a balancer polling every half second still triggers one storage call per interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from regtool.server.storage import paths
from regtool.server.storage.driver import PathNotFound, StorageDriver

__all__ = ["StorageHealth"]


class StorageHealth:
    """The storage driver's health check, thread-safe; ``status()`` is blocking (call it in a worker thread)."""

    def __init__(
        self,
        driver: StorageDriver,
        kind: str,
        *,
        interval: float,
        threshold: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.driver = driver
        self.name = f"storagedriver_{kind}"
        self.interval = interval
        self.threshold = threshold
        self._clock = clock
        self._lock = threading.Lock()
        self._checked: float | None = None
        self._failures = 0
        self._last_error = ""

    def status(self) -> dict[str, str]:
        """``{}`` when healthy, else ``{check name: last error}``; checks the store first if the result is stale."""
        with self._lock:
            now = self._clock()
            if self._checked is None or now - self._checked >= self.interval:
                self._checked = now
                self._check()
            if self._failures >= self.threshold:
                return {self.name: self._last_error}
            return {}

    def _check(self) -> None:
        try:
            self.driver.stat(paths.REPOSITORIES)
        except PathNotFound:
            pass
        except Exception as exc:  # any failure of the store (OSError, a client library's error) is what is reported
            self._failures += 1
            self._last_error = f"{type(exc).__name__}: {exc}"[:300]
            return
        self._failures = 0
        self._last_error = ""
