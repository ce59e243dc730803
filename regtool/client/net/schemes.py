"""Which schemes the client tries for a registry, in order: a rule the transport follows and the CLI's start-up
pre-connect reads before the transport (and httpx under it) is imported."""

from __future__ import annotations

from regtool.reference import is_loopback_host

__all__ = ["candidate_schemes", "default_port"]


def candidate_schemes(registry: str, *, plain_http: bool = False, insecure: bool = False) -> tuple[str, ...]:
    """The schemes to try for ``registry``, in order (protocols.md §3)."""
    if plain_http:
        return ("http",)
    if insecure or is_loopback_host(registry):
        return ("https", "http")
    return ("https",)


def default_port(scheme: str) -> int:
    """The port of a URL that names none."""
    return 443 if scheme == "https" else 80
