"""``login``: check credentials against a registry before they are stored (docker's ``login`` does the same).

The check is ``GET /v2/`` with the credentials: a Basic registry takes them as they are, a Bearer registry's
token endpoint must accept them. A registry that asks for nothing accepts any credentials, as with docker.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from regtool.client.v2.api import RegistryAPI
from regtool.errors import AuthError, RegistryError, UnsupportedProtocolError, UsageError
from regtool.reference import DEFAULT_REGISTRY

__all__ = ["LoginCheck", "normalise_registry", "verify_login"]

_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """What the check saw: the registry, and whether it asked for credentials at all."""

    registry: str
    auth_required: bool


def normalise_registry(text: str) -> str:
    """``host[:port]`` from what a user may type: ``https://host:5000/v1/``, ``host:5000``, ``docker.io``."""
    value = text.strip()
    if "://" in value:
        value = urlsplit(value).netloc
    value = value.split("/", 1)[0].strip().lower()  # host names are case-insensitive; lookups use lower case
    if not value:
        raise UsageError(f"not a registry host: {text!r}")
    return DEFAULT_REGISTRY if value in _HUB_ALIASES else value


async def verify_login(api: RegistryAPI, registry: str) -> LoginCheck:
    """Raise AuthError unless ``registry`` accepts the credentials of ``api``'s auth."""
    base = await api.base_url(registry)
    probe = await api.send("GET", f"{base}/v2/", what=f"login to {registry}", expect=None, auth=False, retry=False)
    required = probe.status_code == 401
    response = await api.send("GET", f"{base}/v2/", what=f"login to {registry}", expect=None)
    status = response.status_code
    if 200 <= status < 300:
        return LoginCheck(registry, required)
    if status in {401, 403}:
        raise AuthError(f"login to {registry} failed: the registry refused the credentials (HTTP {status})")
    if status == 404:
        raise UnsupportedProtocolError(f"login to {registry}: no registry v2 API there (HTTP 404 on /v2/)")
    raise RegistryError(f"login to {registry}: unexpected HTTP {status} from {base}/v2/", status=status)
