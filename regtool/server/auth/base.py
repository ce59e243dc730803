"""The access-controller seam, as in distribution's ``registry/auth``.

Each handler states the access it needs as ``Access`` values (``repository:<name>:pull``, ``push``, ``delete``;
``registry:catalog:*``) and awaits ``controller.authorize(request, accesses)`` before touching storage. A
controller that refuses raises ``ApiError`` (UNAUTHORIZED with a ``WWW-Authenticate`` challenge header, or
DENIED); ``app`` renders it. Basic (htpasswd) and Bearer (token) controllers plug in here later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

__all__ = ["Access", "AccessController", "AllowAll"]


@dataclass(frozen=True, slots=True)
class Access:
    """One resource action, e.g. ``Access("repository", "library/alpine", "pull")``."""

    type: str
    name: str
    action: str

    @property
    def scope(self) -> str:
        """The token scope string: ``repository:library/alpine:pull``."""
        return f"{self.type}:{self.name}:{self.action}"

    @classmethod
    def pull(cls, name: str) -> Access:
        return cls("repository", name, "pull")

    @classmethod
    def push(cls, name: str) -> Access:
        return cls("repository", name, "push")

    @classmethod
    def delete(cls, name: str) -> Access:
        return cls("repository", name, "delete")

    @classmethod
    def catalog(cls) -> Access:
        return cls("registry", "catalog", "*")


class AccessController(Protocol):
    """Decides whether a request may perform every access in ``accesses``; raises ApiError when not."""

    async def authorize(self, request: Request, accesses: list[Access]) -> None: ...


class AllowAll:
    """The default: no authentication, everything allowed."""

    async def authorize(self, request: Request, accesses: list[Access]) -> None:
        return None
