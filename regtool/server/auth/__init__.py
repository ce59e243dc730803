"""Access control for regtool serve: the ``AccessController`` seam and its implementations.

``base`` (the seam, allow-all), ``basic`` (htpasswd Basic auth), ``token`` (bearer tokens and the ``/token``
endpoint), with ``htpasswd``, ``policy`` (who may do what), ``jwt`` (token signing) and ``setup`` (the controller a
``ServerConfig`` asks for).
"""

from __future__ import annotations

from regtool.server.auth.base import Access, AccessController, AllowAll
from regtool.server.auth.basic import BasicController
from regtool.server.auth.policy import AccessPolicy
from regtool.server.auth.setup import AccessSetup, access_from_config
from regtool.server.auth.token import TokenController, TokenIssuer

__all__ = [
    "Access",
    "AccessController",
    "AccessPolicy",
    "AccessSetup",
    "AllowAll",
    "BasicController",
    "TokenController",
    "TokenIssuer",
    "access_from_config",
]
