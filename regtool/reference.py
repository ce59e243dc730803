"""Image references in docker's grammar: ``[host[:port]/]path[:tag][@digest]``.

Normalisation follows the docker engine: a first component that has a ``.`` or a ``:`` or is
``localhost`` names the registry, otherwise the registry is ``docker.io``; on docker.io a one-component
path means ``library/<name>``; without tag or digest the tag is ``latest``. Host names are case-insensitive
(RFC 4343), so the registry is kept lowercased: ``LOCALHOST:5000`` is the loopback host ``localhost:5000``, and
credentials, probes and TLS settings keyed by registry find each other whatever case was typed. skopeo's
``docker://`` transport prefix is accepted and dropped.

>>> str(Reference.parse("busybox"))
'docker.io/library/busybox:latest'
>>> Reference.parse("localhost:5000/team/app@sha256:" + "0" * 64).registry
'localhost:5000'
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from regtool.digest import Digest
from regtool.errors import InvalidDigest, InvalidReference
from regtool.grammar import NAME_COMPONENT_RE, TAG_RE, is_valid_name

__all__ = [
    "DEFAULT_REGISTRY",
    "DOCKER_TRANSPORT",
    "Reference",
    "is_loopback_host",
    "official_repository",
    "parse_registry",
    "registry_api_host",
    "split_host_port",
]

DEFAULT_REGISTRY = "docker.io"
# skopeo's (containers/image's) transport name for a registry: ``docker://host/repo:tag``.
DOCKER_TRANSPORT = "docker://"
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_HOST_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?\Z"
)


def split_host_port(registry: str) -> tuple[str, int | None]:
    """``"host:5000"`` -> ``("host", 5000)``; IPv6 in brackets keeps its brackets off the host."""
    if registry.startswith("["):
        host, _, rest = registry[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        port = int(port_text) if port_text.isascii() and port_text.isdigit() else None
        return host, port
    host, sep, port_text = registry.rpartition(":")
    if sep and port_text.isascii() and port_text.isdigit():
        return host, int(port_text)
    return registry, None


def is_loopback_host(registry: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1, where docker (and regtool) allow plain HTTP."""
    host, _ = split_host_port(registry)
    host = host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def registry_api_host(registry: str) -> str:
    """The host to send API requests to: docker.io's API lives on registry-1.docker.io."""
    return "registry-1.docker.io" if registry.lower() in _DOCKER_HUB_ALIASES else registry


def _strip_transport(text: str) -> str:
    return text[len(DOCKER_TRANSPORT) :] if text[: len(DOCKER_TRANSPORT)].lower() == DOCKER_TRANSPORT else text


def official_repository(registry: str, repository: str) -> str:
    """``repository`` as ``registry`` names it: on Docker Hub a one-component name is an official image,
    ``library/<name>`` (``busybox`` is ``library/busybox``); elsewhere unchanged."""
    if registry.lower() in _DOCKER_HUB_ALIASES and "/" not in repository:
        return f"library/{repository}"
    return repository


def parse_registry(text: str) -> str:
    """A registry argument (``host[:port]``, optionally ``docker://``-prefixed), lowercased and validated.

    A path after the host is refused rather than ignored: ``catalog host/team`` would otherwise ask a URL under
    that path, or list the whole registry while looking as if it listed ``team``.
    """
    value = _strip_transport(text.strip()).rstrip("/")
    if "/" in value:
        path = value.partition("/")[2]
        raise InvalidReference(f"expected a registry host[:port], got {text!r}: a registry takes no path ({path!r})")
    registry = value.lower()
    if not registry:
        raise InvalidReference(f"expected a registry host[:port], got {text!r}")
    _validate_registry(registry, text)
    return DEFAULT_REGISTRY if registry in _DOCKER_HUB_ALIASES else registry


def _validate_registry(registry: str, text: str) -> None:
    if not _HOST_RE.match(registry):
        raise InvalidReference(f"invalid registry host {registry!r} in reference {text!r}")
    _, port = split_host_port(registry)
    if port is not None and not 0 < port < 65536:
        raise InvalidReference(f"invalid port in registry {registry!r} of reference {text!r}")


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised image reference. ``tag`` and ``digest`` may both be set (the digest wins)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: str | None = "latest") -> Reference:
        """Parse ``text``; raise InvalidReference naming the bad part. No network is touched."""
        if not text or len(text) > 512 or text != text.strip():
            raise InvalidReference(f"invalid image reference {text[:80]!r}")
        rest = _strip_transport(text)
        digest: Digest | None = None
        if "@" in rest:
            rest, _, digest_text = rest.partition("@")
            try:
                digest = Digest.parse(digest_text)
            except InvalidDigest as exc:
                raise InvalidReference(f"invalid digest in reference {text!r}: {exc}") from None
        tag: str | None = None
        last_slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > last_slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not TAG_RE.match(tag):
                raise InvalidReference(f"invalid tag {tag!r} in reference {text!r}")
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first.lower() == "localhost" or first.startswith("[")):
            registry, path = first.lower(), remainder
            _validate_registry(registry, text)
        else:
            registry, path = DEFAULT_REGISTRY, rest
        if registry in _DOCKER_HUB_ALIASES:
            registry = DEFAULT_REGISTRY
            path = official_repository(registry, path)
        if not path:
            raise InvalidReference(f"missing repository in reference {text!r}")
        for component in path.split("/"):
            if not NAME_COMPONENT_RE.match(component):
                raise InvalidReference(
                    f"invalid repository name {path!r} in reference {text!r}: "
                    "components are lowercase letters, digits and separators (. _ __ -)"
                )
        if not is_valid_name(path) or len(registry) + 1 + len(path) > 255:
            raise InvalidReference(f"repository name too long in reference {text[:80]!r}")
        if tag is None and digest is None and default_tag is not None:
            tag = default_tag
        return cls(registry, path, tag, digest)

    @classmethod
    def parse_repository(cls, text: str) -> Reference:
        """Parse a repository reference that may not carry a tag or digest (``regtool tags``)."""
        ref = cls.parse(text, default_tag=None)
        if ref.tag is not None or ref.digest is not None:
            raise InvalidReference(f"expected a repository without tag or digest, got {text!r}")
        return ref

    @property
    def reference(self) -> str:
        """What goes in ``/v2/<name>/manifests/<reference>``: the digest if known, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or "latest"

    @property
    def api_host(self) -> str:
        return registry_api_host(self.registry)

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.registry)

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: Digest) -> Reference:
        return replace(self, digest=digest)

    @property
    def repository_ref(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.repository_ref
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text
