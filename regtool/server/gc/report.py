"""What a collection removed (or, in a dry run, would remove), and the bytes that freed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["GcReport", "Removal", "RemovalKind"]

RemovalKind = Literal[
    "manifest", "referrer-entry", "link", "repository", "v1-image", "v1-repository", "blob", "upload", "v1-upload"
]


@dataclass(frozen=True, slots=True)
class Removal:
    """One thing removed: ``what`` is a digest (a repository's name for ``repository`` and ``v1-repository``, an
    id for ``upload``, ``v1-upload`` and ``v1-image``); ``size`` is the bytes freed (blob and upload data; 0 for
    links and other small files)."""

    kind: RemovalKind
    what: str
    repository: str | None = None
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"kind": self.kind, "what": self.what, "size": self.size}
        if self.repository is not None:
            record["repository"] = self.repository
        return record


@dataclass
class GcReport:
    dry_run: bool
    removed: list[Removal] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(r.size for r in self.removed)

    def count(self, kind: RemovalKind) -> int:
        return sum(1 for r in self.removed if r.kind == kind)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed": [r.to_json() for r in self.removed],
            "counts": dict(sorted(Counter(r.kind for r in self.removed).items())),
            "bytes_freed": self.bytes_freed,
        }
