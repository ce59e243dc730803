"""Who is looking, and what they may see and do: the registry's own access controller, seen from a browser.

A browser cannot fetch bearer tokens, so under token auth the pages take HTTP Basic credentials and check them
against the users and policy of the token endpoint (``TokenController.basic``, as the v1 API does). Under
htpasswd auth the pages use the very controller of the API, so a page of repository ``R`` is shown exactly when
``GET /v2/R/manifests/...`` would be allowed, and a delete button exactly when ``DELETE`` would be.
"""

from __future__ import annotations

from starlette.requests import Request

from regtool.server.auth.base import Access, AccessController, AllowAll, permitted
from regtool.server.auth.basic import BasicController, basic_credentials
from regtool.server.auth.token import TokenController

__all__ = ["WebAccess"]


class WebAccess:
    """The access controller the pages use, over the app's own."""

    def __init__(self, controller: AccessController) -> None:
        self.controller: AccessController = controller.basic if isinstance(controller, TokenController) else controller

    @property
    def open(self) -> bool:
        """True when the registry has no authentication at all (nothing to log in to)."""
        return isinstance(self.controller, AllowAll)

    @property
    def challenge(self) -> dict[str, str]:
        """The header that makes a browser ask for a user name and password."""
        realm = self.controller.realm if isinstance(self.controller, BasicController) else "regtool"
        return {"WWW-Authenticate": 'Basic realm="{}"'.format(realm.replace("\\", "\\\\").replace('"', '\\"'))}

    async def user(self, request: Request) -> str | None:
        """The signed-in user (valid Basic credentials), None for anonymous visitors."""
        if isinstance(self.controller, BasicController):
            return await self.controller.user(request)
        return None

    @staticmethod
    def sent_credentials(request: Request) -> bool:
        return basic_credentials(request) is not None

    async def authorize(self, request: Request, *accesses: Access) -> None:
        """Raise ``ApiError`` (401 with the challenge, or 403) unless every access is allowed."""
        await self.controller.authorize(request, list(accesses))

    async def permitted(self, request: Request, accesses: list[Access]) -> list[Access]:
        return await permitted(self.controller, request, accesses)

    async def may(self, request: Request, access: Access) -> bool:
        return bool(await self.permitted(request, [access]))
