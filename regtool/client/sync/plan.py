"""What a sync copies: the sources (a repository, a whole registry, a directory), their tags, and the filters.

A :class:`SourceSpec` is one source as the command line or one entry of a skopeo sync file names it; the engine
expands it against the live source (catalog, tag lists) into :class:`ImageJob` values, one per tag, after
:class:`TagFilter` has chosen the tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from regtool.client.sync.endpoints import DirectoryEndpoint, Endpoint
from regtool.client.v2.referrers import is_referrer_tag
from regtool.errors import UsageError

if TYPE_CHECKING:
    from regtool.client.net.credentials import Credentials
    from regtool.client.sync.semver import SemverRange

__all__ = ["ImageJob", "SourceSpec", "TagFilter", "compile_pattern"]


def compile_pattern(text: str, *, option: str) -> re.Pattern[str]:
    """A regular expression from the user; UsageError naming ``option`` when it does not compile."""
    try:
        return re.compile(text)
    except re.error as exc:
        raise UsageError(f"{option}: invalid regular expression {text!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class TagFilter:
    """Which tags to take: ``names`` (exactly these, when given), those that every ``include`` matches as a whole,
    that no ``exclude`` matches, and whose version every ``semver`` range contains. Referrer tags (the tag schema's
    ``sha256-<hex>``, cosign's ``.sig``/``.att``/``.sbom``) are never images to copy: they travel with the image
    they refer to."""

    names: tuple[str, ...] | None = None
    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()
    semver: tuple[SemverRange, ...] = ()

    def narrowed(self, other: TagFilter) -> TagFilter:
        """The tags both filters take (a sync file's choice and the command line's)."""
        names = self.names if other.names is None else other.names
        if self.names is not None and other.names is not None:
            names = tuple(name for name in self.names if name in other.names)
        return TagFilter(names, self.include + other.include, self.exclude + other.exclude, self.semver + other.semver)

    def select(self, tags: list[str]) -> list[str]:
        wanted = None if self.names is None else set(self.names)
        return [
            tag
            for tag in tags
            if not is_referrer_tag(tag)
            and (wanted is None or tag in wanted)
            and all(pattern.fullmatch(tag) is not None for pattern in self.include)
            and not any(pattern.fullmatch(tag) is not None for pattern in self.exclude)
            and all(semver.matches(tag) for semver in self.semver)
        ]


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One source: ``endpoint`` with ``repository`` (None: every repository of the registry's catalog or of the
    directory, those ``repos`` matches), its tags chosen by ``tags``. ``credentials`` are for the source's
    registry (a skopeo sync file's ``credentials``)."""

    endpoint: Endpoint
    repository: str | None
    tags: TagFilter = field(default_factory=TagFilter)
    repos: re.Pattern[str] | None = None
    credentials: Credentials | None = None


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One tag to sync: from ``source_repository`` of ``spec``'s endpoint to ``target_repository`` at DEST."""

    spec: SourceSpec
    source_repository: str
    tag: str
    target_repository: str

    @property
    def name(self) -> str:
        """The source image, in full (``host/repo:tag``, or ``dir/repo:tag``)."""
        endpoint = self.spec.endpoint
        if isinstance(endpoint, DirectoryEndpoint):
            return f"{endpoint.layout_path(self.source_repository)}:{self.tag}"
        return f"{endpoint.registry}/{self.source_repository}:{self.tag}"
