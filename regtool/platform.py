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
from regtool.mediatypes import INDEX_TYPES

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
    """The variant as containerd normalises it: arm64's default (v8) and amd64's (v1) are no variant, and arm
    without one is v7."""
    if p.architecture == "arm64" and p.variant in (None, "v8"):
        return None
    if p.architecture == "amd64" and p.variant == "v1":
        return None
    if p.architecture == "arm" and p.variant is None:
        return "v7"
    return p.variant


# The variants of an architecture in order: a machine of one runs the earlier ones too (arm/v7 runs v6 and v5,
# amd64/v3 runs v2 and v1); None is the default variant.
_VARIANT_LEVELS: dict[str, tuple[str | None, ...]] = {
    "arm": ("v5", "v6", "v7", "v8"),
    "amd64": (None, "v2", "v3", "v4"),
    "arm64": (None, "v9"),
}


def _rank(wanted: Platform, candidate: Platform) -> int | None:
    """How well ``candidate`` serves ``wanted``: 0 is the same platform, more is a lesser variant it runs too
    (arm/v6 for arm/v7), None is not at all. A request without a variant, on an architecture without known
    levels, takes any variant after the entry that has none."""
    if wanted.os != candidate.os or wanted.architecture != candidate.architecture:
        return None
    want, have = _normalised_variant(wanted), _normalised_variant(candidate)
    if want == have:
        return 0
    levels = _VARIANT_LEVELS.get(wanted.architecture)
    if levels is not None:
        if want in levels and have in levels and levels.index(have) < levels.index(want):
            return levels.index(want) - levels.index(have)
        return None
    return 1 if want is None else None


def matches(wanted: Platform, candidate: Platform) -> bool:
    """Whether ``candidate`` is one of the platforms ``wanted`` names: the same, or any variant of its
    architecture when ``wanted`` gives none (``linux/arm`` keeps arm/v6 and arm/v7 alike)."""
    if wanted.variant is None:
        return wanted.os == candidate.os and wanted.architecture == candidate.architecture
    return _rank(wanted, candidate) == 0


def select_manifest(entries: tuple[Descriptor, ...], wanted: Platform, *, where: str = "index") -> Descriptor:
    """The index entry that serves ``wanted`` best (its own variant, else the nearest lesser one it runs; the
    first of equals); NotFoundError listing the choices otherwise."""
    best: tuple[int, Descriptor] | None = None
    for entry in entries:
        rank = None if entry.platform is None else _rank(wanted, entry.platform)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, entry)
    if best is None:
        raise NotFoundError(f"{where} has no manifest for platform {wanted}; available: {available_platforms(entries)}")
    return best[1]


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
            found = await _in_nested_index(index, wanted, fetch, where=where)
            if found is None:
                if optional:
                    return ResolvedImage(top, None, chosen)
                raise
            index, entry = found
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


async def _in_nested_index(
    index: Manifest, wanted: Platform, fetch: ManifestFetch, *, where: str
) -> tuple[Manifest, Descriptor] | None:
    """The first entry for ``wanted`` in an index that ``index`` names without a platform (an index of indexes,
    as containerd reads it), with that index; None when none has one."""
    nested = [entry for entry in index.manifests if entry.platform is None and entry.media_type in INDEX_TYPES]
    for child in await fetch(nested) if nested else []:
        if not child.is_index:
            continue
        try:
            return child, select_manifest(child.manifests, wanted, where=where)
        except NotFoundError:
            continue
    return None
