"""Platform strings (``os/arch[/variant]``) and choosing a manifest from an index."""

from __future__ import annotations

import platform as _stdlib_platform
import sys

from regtool.errors import NotFoundError, UsageError
from regtool.manifest import Descriptor, Platform

__all__ = ["host_platform", "parse_platform", "select_manifest"]

_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i386": "386", "i686": "386"}


def parse_platform(text: str) -> Platform:
    """``linux/amd64`` or ``linux/arm/v7`` -> Platform; UsageError on anything else."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {text!r}: expected OS/ARCH[/VARIANT], e.g. linux/amd64")
    return Platform(architecture=parts[1], os=parts[0], variant=parts[2] if len(parts) == 3 else None)


def host_platform() -> Platform:
    """The platform of this machine, in OCI's names (linux/amd64, linux/arm64/v8, ...)."""
    machine = _stdlib_platform.machine().lower()
    arch = _ARCH_ALIASES.get(machine, machine)
    os_name = "linux" if sys.platform.startswith("linux") else sys.platform
    variant = "v7" if machine == "armv7l" else None
    return Platform(architecture=arch, os=os_name, variant=variant)


def _normalised_variant(p: Platform) -> str | None:
    # arm64's default variant is v8: an index entry "arm64/v8" matches a request for "arm64".
    if p.architecture == "arm64" and p.variant in (None, "v8"):
        return None
    return p.variant


def matches(wanted: Platform, candidate: Platform) -> bool:
    if wanted.os != candidate.os or wanted.architecture != candidate.architecture:
        return False
    want_variant = _normalised_variant(wanted)
    return want_variant is None or want_variant == _normalised_variant(candidate)


def select_manifest(entries: tuple[Descriptor, ...], wanted: Platform, *, where: str = "index") -> Descriptor:
    """The first index entry whose platform matches ``wanted``; NotFoundError listing the choices otherwise."""
    for entry in entries:
        if entry.platform is not None and matches(wanted, entry.platform):
            return entry
    available = ", ".join(str(e.platform) for e in entries if e.platform is not None) or "none"
    raise NotFoundError(f"{where} has no manifest for platform {wanted}; available: {available}")
