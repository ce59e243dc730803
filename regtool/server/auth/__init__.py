"""Access control for regtool serve: the ``AccessController`` seam and its implementations."""

from __future__ import annotations

from regtool.server.auth.base import Access, AccessController, AllowAll

__all__ = ["Access", "AccessController", "AllowAll"]
