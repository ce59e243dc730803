"""What every handler needs, built once by ``create_app`` and kept on ``app.state.context``."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from regtool.server.auth.base import AccessController
from regtool.server.config import ServerConfig
from regtool.server.health import StorageHealth
from regtool.server.metrics import ServerMetrics
from regtool.server.storage.driver import StorageDriver
from regtool.server.storage.registry import Registry

if TYPE_CHECKING:
    from regtool.server.proxy.store import ProxyStore

__all__ = ["ServerContext", "UploadLocks"]


class UploadLocks:
    """One lock per upload id, so two requests never append to the same upload at once.

    A lock lives only while requests hold it or wait for it: ids that a client made up, uploads that failed or
    were abandoned leave nothing behind."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        # upload id -> its lock and how many requests hold it or wait for it
        self._locks: dict[str, tuple[anyio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def __call__(self, upload_id: str) -> AsyncIterator[None]:
        with self._guard:
            lock, users = self._locks.get(upload_id, (None, 0))
            lock = lock or anyio.Lock()
            self._locks[upload_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            with self._guard:
                users = self._locks[upload_id][1] - 1
                if users:
                    self._locks[upload_id] = (lock, users)
                else:
                    del self._locks[upload_id]

    def __len__(self) -> int:
        """How many upload ids have a lock now."""
        with self._guard:
            return len(self._locks)


@dataclass(frozen=True)
class ServerContext:
    """The configuration, the storage (driver + v2 registry), the access controller, the upload locks."""

    config: ServerConfig
    driver: StorageDriver
    registry: Registry
    access: AccessController
    upload_locks: UploadLocks = field(default_factory=UploadLocks)
    # /debug/health's storage check and /metrics (None when metrics are off).
    health: StorageHealth | None = None
    metrics: ServerMetrics | None = None
    # The pull-through cache the handlers ask instead of the registry (None: a plain registry).
    proxy: ProxyStore | None = None
