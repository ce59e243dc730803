"""A storage driver that counts what is asked of the real one underneath (tests and benchmarks of the cache).

``CountingDriver(FilesystemDriver(root))`` forwards every attribute (an object store's extras too) and counts
each call by name in ``calls``; ``count_store_calls(registry)`` puts one under a running server's Registry.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from regtool.server.storage.registry import Registry

__all__ = ["CountingDriver", "count_store_calls"]


class CountingDriver:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
            return attribute(*args, **kwargs)

        return counted

    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()


def count_store_calls(registry: Registry) -> CountingDriver:
    """Count the store calls ``registry`` makes from now on (its blob store's too)."""
    counter = CountingDriver(registry.driver)
    registry.driver = counter
    registry.blobs.driver = counter
    return counter
