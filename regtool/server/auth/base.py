"""The access-controller seam, as in distribution's ``registry/auth``.

Each handler states the access it needs as ``Access`` values (``repository:<name>:pull``, ``push``, ``delete``;
``registry:catalog:*``) and awaits ``controller.authorize(request, accesses)`` before touching storage. A
controller that refuses raises ``ApiError`` (UNAUTHORIZED with a ``WWW-Authenticate`` challenge header, or
DENIED); ``app`` renders it. Basic (htpasswd) and Bearer (token) controllers plug in here.

Listings (the catalog, the web view's repository list) show only what the caller may pull: ``permitted`` keeps the
accesses the caller holds, asking a controller that has a ``permitted`` method of its own in one call (it
authenticates once, not once per repository) and falling back to ``authorize`` per access otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from starlette.requests import Request

from regtool.server.errors import ApiError

__all__ = ["Access", "AccessController", "AllowAll", "PermittedFilter", "permitted"]


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


@runtime_checkable
class PermittedFilter(Protocol):
    """A controller that can sort many accesses at once: those of ``accesses`` the request's caller holds."""

    async def permitted(self, request: Request, accesses: list[Access]) -> list[Access]: ...


async def permitted(controller: AccessController, request: Request, accesses: list[Access]) -> list[Access]:
    """The accesses of ``accesses`` that ``controller`` grants the request's caller, in their order; never raises."""
    if isinstance(controller, PermittedFilter):
        return await controller.permitted(request, accesses)
    kept: list[Access] = []
    for access in accesses:
        try:
            await controller.authorize(request, [access])
        except ApiError:
            continue
        kept.append(access)
    return kept


class AllowAll:
    """The default: no authentication, everything allowed."""

    async def authorize(self, request: Request, accesses: list[Access]) -> None:
        return None

    async def permitted(self, request: Request, accesses: list[Access]) -> list[Access]:
        return list(accesses)
