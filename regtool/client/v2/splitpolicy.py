"""SplitPolicy: which blobs a pull fetches over several Range connections (``rangefetch.SplitDownload``).

Apart from the download itself, because every ``Client`` holds a policy while most commands never download a
blob: ``inspect`` and ``tags`` need not import the download machinery to build their client.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from regtool.errors import UsageError
from regtool.reference import is_loopback_host

__all__ = ["DEFAULT_PARTS", "DEFAULT_THRESHOLD", "SplitPolicy"]

DEFAULT_THRESHOLD = 512 << 20
DEFAULT_PARTS = 4


@dataclass(frozen=True, slots=True)
class SplitPolicy:
    """Blobs with at least ``threshold`` bytes still to fetch are fetched over ``parts`` connections.

    ``remote_only`` (the default) leaves registries on this machine to one stream: nothing there limits a
    connection, and splitting only adds work (BENCHMARKS.md).
    """

    threshold: int = DEFAULT_THRESHOLD
    parts: int = DEFAULT_PARTS
    remote_only: bool = True

    def __post_init__(self) -> None:
        if self.parts < 2:
            raise UsageError(f"a split download needs at least 2 connections, got {self.parts}")
        if self.threshold < 1:
            raise UsageError(f"the split threshold must be positive, got {self.threshold}")

    def applies(self, remaining: int, url: str) -> bool:
        if self.remote_only and is_loopback_host(urlsplit(url).netloc):
            return False
        return remaining >= self.threshold and remaining >= self.parts
