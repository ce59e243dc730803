"""What every handler needs, built once by ``create_app`` and kept on ``app.state.context``."""

from __future__ import annotations

import threading
from collections import defaultdict
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
    """One lock per upload id, so two requests never append to the same upload at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: defaultdict[str, anyio.Lock] = defaultdict(anyio.Lock)

    def __call__(self, upload_id: str) -> anyio.Lock:
        with self._guard:
            return self._locks[upload_id]

    def forget(self, upload_id: str) -> None:
        with self._guard:
            self._locks.pop(upload_id, None)


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
