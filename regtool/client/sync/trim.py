"""``--platform``: an index cut down to some platforms (a new index, so a new digest).

The kept entries are the source's own descriptors, in their order, and every other field of the index is kept
as it was; only the ``manifests`` list shrinks. The result is deterministic, so a re-run computes the same digest
and finds the destination up to date.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from regtool.errors import NotFoundError
from regtool.manifest import Manifest, Platform, parse_manifest
from regtool.platform import available_platforms, matches

__all__ = ["trim_index"]


def trim_index(index: Manifest, platforms: Sequence[Platform], *, where: str) -> Manifest:
    """``index`` with only the entries for ``platforms``; ``index`` itself when it keeps them all (or is an image).

    Entries without a platform (attestations, for one) are dropped: they belong to no platform that was asked for.
    NotFoundError, listing what the index has, when none of ``platforms`` is in it.
    """
    if not index.is_index or not platforms:
        return index
    keep = [
        i
        for i, entry in enumerate(index.manifests)
        if entry.platform is not None and any(matches(wanted, entry.platform) for wanted in platforms)
    ]
    if not keep:
        asked = ", ".join(map(str, platforms))
        raise NotFoundError(f"{where} has no manifest for {asked}; available: {available_platforms(index.manifests)}")
    if len(keep) == len(index.manifests):
        return index
    document = json.loads(index.raw)
    document["manifests"] = [document["manifests"][i] for i in keep]
    raw = json.dumps(document, indent=2).encode()
    return parse_manifest(raw, index.media_type)
