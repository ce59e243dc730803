"""Registry v1 routes and headers (protocols.md §1.2), shared by client and server."""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = [
    "CHECKSUM_HEADER",
    "CHECKSUM_PAYLOAD_HEADER",
    "ENDPOINTS_HEADER",
    "IMAGE_ID_RE",
    "PAYLOAD_CHECKSUM_HEADER",
    "REGISTRY_VERSION",
    "ROUTES",
    "SIZE_HEADER",
    "STANDALONE_HEADER",
    "TOKEN_HEADER",
    "V1_TAG_RE",
    "VERSION_HEADER",
    "normalize_v1_repository",
    "parse_standalone",
    "path",
]

VERSION_HEADER = "X-Docker-Registry-Version"
STANDALONE_HEADER = "X-Docker-Registry-Standalone"
TOKEN_HEADER = "X-Docker-Token"
ENDPOINTS_HEADER = "X-Docker-Endpoints"
SIZE_HEADER = "X-Docker-Size"
CHECKSUM_HEADER = "X-Docker-Checksum"
# docker-registry's images.py sends X-Docker-Payload-Checksum; some of its tests read X-Docker-Checksum-Payload,
# which is also the request header of the checksum PUT. Clients accept both; regtool serve sends both.
PAYLOAD_CHECKSUM_HEADER = "X-Docker-Payload-Checksum"
CHECKSUM_PAYLOAD_HEADER = "X-Docker-Checksum-Payload"
REGISTRY_VERSION = "0.9.1"

# docker-registry accepts 16 or 64 hex; the engine itself only 64.
IMAGE_ID_RE = re.compile(r"^(?:[a-f0-9]{16}|[a-f0-9]{64})\Z")
V1_TAG_RE = re.compile(r"^\w[\w.-]{0,127}\Z", re.ASCII)


def normalize_v1_repository(name: str) -> str:
    """A one-component name means ``library/<name>`` (docker-registry ``toolkit.parse_repository_name``)."""
    return name if "/" in name else f"library/{name}"


# name -> path template: the server builds its v1 router from this table and the client its URLs (``path``).
# ``{repo}`` is a repository name, which holds a ``/``.
ROUTES: dict[str, str] = {
    "ping.root": "/_ping",
    "ping": "/v1/_ping",
    "users.noslash": "/v1/users",
    "users": "/v1/users/",
    "user": "/v1/users/{user}/",
    "search": "/v1/search",
    "image.json": "/v1/images/{image_id}/json",
    "image.layer": "/v1/images/{image_id}/layer",
    "image.checksum": "/v1/images/{image_id}/checksum",
    "image.ancestry": "/v1/images/{image_id}/ancestry",
    "tag.json": "/v1/repositories/{repo}/tags/{tag}/json",
    "tag": "/v1/repositories/{repo}/tags/{tag}",
    "tags": "/v1/repositories/{repo}/tags",
    "images": "/v1/repositories/{repo}/images",
    "repository.json": "/v1/repositories/{repo}/json",
    "repository.auth": "/v1/repositories/{repo}/auth",
    "repository.properties": "/v1/repositories/{repo}/properties",
    "repository": "/v1/repositories/{repo}/",
}


def path(route: str, **params: str) -> str:
    """The path of ``route`` with its parameters filled in (quoted; a repository keeps its ``/``)."""
    return ROUTES[route].format_map({key: quote(value, safe="/") for key, value in params.items()})


def parse_standalone(header: str | None) -> bool:
    """The engine's reading of X-Docker-Registry-Standalone: absent -> True; 'true' (any case) or '1' -> True."""
    if header is None or header == "":
        return True
    return header.strip().lower() in {"true", "1"}
