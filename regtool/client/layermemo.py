"""What a layer tar compressed to, remembered across runs: diff_id -> (gzip digest, size).

A docker-archive's layers must be gzipped before their digests are known, so without a memory every push of an
archive compresses and uploads every layer again, even to a registry that has them all. regtool's gzip is
deterministic for one ISA-L build and level, so a tar's compressed digest is a fact worth keeping (skopeo keeps
the same in its blob-info cache): a push asks the registry for the remembered digest first, and a layer it has is
neither compressed nor sent.

Entries live under ``compressed/<variant>/`` beside the upload state (``resume.default_state_dir``'s parent), the
variant naming the compressor's version and level, so another build never reads digests it would not produce.
An unreadable entry is a miss.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from regtool.client.resume import default_state_dir
from regtool.digest import Digest
from regtool.files import write_atomic

__all__ = ["LayerMemo", "Remembered"]


@dataclass(frozen=True, slots=True)
class Remembered:
    """A tar's compressed blob: its digest and size."""

    digest: Digest
    size: int


class LayerMemo:
    """diff_id -> compressed blob, for one compressor ``variant`` (e.g. ``gzip-isal-1.9.1-2``)."""

    def __init__(self, variant: str, root: Path | None = None) -> None:
        base = root if root is not None else default_state_dir().parent / "compressed"
        self.directory = base / variant

    def _path(self, diff_id: Digest) -> Path:
        return self.directory / f"{diff_id.algorithm}-{diff_id.encoded}.json"

    def get(self, diff_id: Digest) -> Remembered | None:
        try:
            data = json.loads(self._path(diff_id).read_bytes())
            digest, size = data["digest"], data["size"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(digest, str) or not Digest.is_valid(digest) or not isinstance(size, int) or size < 0:
            return None
        return Remembered(Digest.parse(digest), size)

    def put_all(self, blobs: Mapping[Digest, Remembered]) -> None:
        """Remember each diff_id's blob (unless remembered already); a memory that cannot be written is only a
        lost shortcut."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for diff_id, blob in blobs.items():
                if self.get(diff_id) != blob:
                    data = json.dumps({"digest": str(blob.digest), "size": blob.size}).encode()
                    write_atomic(self._path(diff_id), data)
        except OSError:
            pass
