"""Platform strings (``os/arch[/variant]``), choosing a manifest from an index, and following an index down to
the image of one platform (``select_image``: the one place that does it, for a registry's manifests and a local
layout's alike)."""

from __future__ import annotations

import platform as _stdlib_platform
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from regtool.digest import Digest
from regtool.errors import ImageFormatError, NotFoundError, UnsupportedProtocolError, UsageError
from regtool.manifest import MAX_INDEX_DEPTH, Descriptor, Manifest, Platform

__all__ = ["ResolvedImage", "available_platforms", "host_platform", "parse_platform", "select_image", "select_manifest"]

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
    raise NotFoundError(f"{where} has no manifest for platform {wanted}; available: {available_platforms(entries)}")


def available_platforms(entries: Sequence[Descriptor]) -> str:
    """The platforms an index lists, for an error message ("none" when it names none)."""
    return ", ".join(str(e.platform) for e in entries if e.platform is not None) or "none"


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """What a reference names (``top``: an image, or an index) and the image manifest chosen in it for a platform.

    ``image`` is ``top`` itself for an image; for an index, the chosen entry's manifest (nested indexes followed),
    or None where the caller allowed an index without a usable entry. ``platform`` is the chosen entry's.
    """

    top: Manifest
    image: Manifest | None
    platform: str | None = None

    @property
    def digest(self) -> Digest:
        return self.top.digest

    @property
    def media_type(self) -> str:
        return self.top.media_type

    @property
    def index(self) -> Manifest | None:
        return self.top if self.top.is_index else None

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms the top index lists (none for an image)."""
        if not self.top.is_index:
            return ()
        return tuple(str(d.platform) for d in self.top.manifests if d.platform is not None)


ManifestFetch = Callable[[Sequence[Descriptor]], Awaitable[list[Manifest]]]
"""The manifests of index entries, in order (verified against the entries by whoever fetches them)."""


async def select_image(
    top: Manifest, wanted: Platform, fetch: ManifestFetch, *, where: str, optional: bool = False
) -> ResolvedImage:
    """``top`` resolved to the image of platform ``wanted``: an image is itself; an index's entry for ``wanted``
    is fetched, and an entry that is an index again is followed the same way (at most MAX_INDEX_DEPTH deep).

    An index without an entry for ``wanted`` is a NotFoundError listing the platforms it has, and an entry that is
    no image an UnsupportedProtocolError; with ``optional`` both resolve to ``image`` None instead (``inspect``
    describes such an index alone).
    """
    if not top.is_index:
        return ResolvedImage(top, top)
    index, chosen = top, None
    for _depth in range(MAX_INDEX_DEPTH):
        try:
            entry = select_manifest(index.manifests, wanted, where=where)
        except NotFoundError:
            if optional:
                return ResolvedImage(top, None, chosen)
            raise
        chosen = chosen or str(entry.platform)
        (child,) = await fetch((entry,))
        if child.is_index:
            index = child
            continue
        if child.kind != "image":
            if optional:
                return ResolvedImage(top, None, chosen)
            raise UnsupportedProtocolError(f"{where}: platform {wanted} points at a {child.kind}, not an image")
        return ResolvedImage(top, child, chosen)
    raise ImageFormatError(f"{where}: indexes nest more than {MAX_INDEX_DEPTH} deep")
