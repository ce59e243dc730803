"""How the library reports progress: a small Protocol the CLI implements (rich bars, JSON lines, nothing).

Library code never prints; it calls these methods. ``key`` identifies one transfer (usually a digest).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["NullProgress", "Progress"]


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
