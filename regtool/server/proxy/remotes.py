"""``--proxy-remote URL`` / ``--proxy-remote NAMESPACE=URL`` values as ``ProxyRemote``s (no network here)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from regtool.errors import UsageError
from regtool.server.config import ProxyRemote

__all__ = ["check_remote_url", "parse_proxy_remotes"]


def parse_proxy_remotes(
    specs: Sequence[str], *, username: str | None = None, password: str | None = None
) -> tuple[ProxyRemote, ...]:
    """One remote per spec, each with the given credentials (None: docker's config for that upstream's host).

    ``NAMESPACE=URL`` serves containerd's ``?ns=NAMESPACE`` requests from URL (``docker.io=https://...``); a bare
    URL serves every other request.
    """
    if (username is None) != (password is None):
        raise UsageError("--proxy-username needs a password (--proxy-password-file or REGTOOL_PROXY_PASSWORD)")
    remotes: list[ProxyRemote] = []
    for spec in specs:
        namespace: str | None = None
        url = spec.strip()
        head, sep, tail = url.partition("=")
        if sep and "://" not in head:
            namespace, url = head.strip().lower(), tail.strip()
            if not namespace or not all(c.isalnum() or c in ".-:[]" for c in namespace):
                raise UsageError(f"--proxy-remote {spec!r}: {head!r} is not a registry host to map")
        check_remote_url(url)
        remotes.append(ProxyRemote(url.rstrip("/"), namespace, username, password))
    namespaces = [remote.namespace for remote in remotes]
    for namespace in namespaces:
        if namespaces.count(namespace) > 1:
            which = "without a namespace" if namespace is None else f"for namespace {namespace}"
            raise UsageError(f"--proxy-remote: more than one remote {which}")
    return tuple(remotes)


def check_remote_url(url: str) -> tuple[str, str]:
    """``(scheme, host[:port])`` of an upstream URL; UsageError when it is not ``http(s)://host[:port]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
        raise UsageError(f"proxy remote {url!r}: expected http(s)://host[:port] (no path)")
    if "@" in parts.netloc:
        raise UsageError(f"proxy remote {url!r}: give credentials with --proxy-username, not in the URL")
    return parts.scheme, parts.netloc.lower()
