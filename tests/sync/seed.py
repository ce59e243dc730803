"""A source registry filled for sync tests: 3 repositories x 10 tags, one tag a multi-platform index.

Every image has the same base layer (so blobs are shared across repositories, as mirrors see) and a layer of
its own. ``seed(host, work)`` pushes them with regtool's own client and returns what it pushed, tag by tag.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from regtool.client import Client
from regtool.digest import Digest
from regtool.reference import Reference
from tests.support.images import write_image, write_index

__all__ = ["INDEX_TAG", "REPOSITORIES", "TAGS", "seed"]

REPOSITORIES = ("team/app", "team/web", "lib/base")
TAGS = ("1.0.0", "1.1.0", "1.2.0", "1.2.1", "2.0.0", "2.1.0", "3.0.0-rc.1", "latest", "dev", "multi")
# In every repository this tag is an index over linux/amd64 and linux/arm64.
INDEX_TAG = "multi"


def seed(host: str, work: Path) -> dict[str, Digest]:
    """Push every image to ``host``; ``{"repo:tag": digest}``."""
    pushed: dict[str, Digest] = {}
    sources: list[tuple[str, str]] = []
    for repository in REPOSITORIES:
        layout = work / repository.replace("/", "_")
        for tag in TAGS:
            if tag == INDEX_TAG:
                index_layout = layout.with_name(layout.name + "_index")
                built = write_index(index_layout, tag)
                pushed[f"{repository}:{tag}"] = built.manifest.digest
                sources.append((f"{index_layout}:{tag}", f"{host}/{repository}:{tag}"))
                continue
            image = write_image(
                layout, tag, [{"base.txt": b"the shared base"}, {"app.txt": f"{repository} {tag}".encode()}]
            )
            pushed[f"{repository}:{tag}"] = image.manifest.digest
            sources.append((f"{layout}:{tag}", f"{host}/{repository}:{tag}"))

    async def main() -> None:
        async with Client() as client:
            for layout, target in sources:
                await client.push(layout, Reference.parse(target))

    anyio.run(main)
    return pushed
