"""From a reference to the image manifests a job moves: the one path pull, copy and inspect resolve through.

``resolve_image`` fetches the manifest a reference names (by tag or digest, from the endpoints of an
``EndpointChain``: mirrors first) and, for an index, follows it to the image of one platform (``platform.select_image``,
nested indexes included). ``plan_images`` is the same for a job that may take every platform of an index (pull
``--all-platforms``, a copy without ``--platform``): the whole tree, children before the indexes that list them.
Every child manifest is fetched by digest and checked against the size its index gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from regtool.client.endpoints import EndpointChain
from regtool.client.mirrors import Endpoint
from regtool.client.tasks import run_bounded
from regtool.client.v2.api import RegistryAPI
from regtool.digest import Digest
from regtool.errors import IntegrityError, UnsupportedProtocolError
from regtool.manifest import Descriptor, Manifest, Platform, index_tree
from regtool.platform import ManifestFetch, ResolvedImage, host_platform, select_image
from regtool.reference import Reference

__all__ = ["ImagePlan", "ResolvedImage", "plan_images", "resolve_image"]

# Child manifests are small: fetched this many at a time when a job names no concurrency of its own.
_MANIFEST_JOBS = 8


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """What a job moves for a reference: the manifests (children first), the images among them, and their blobs.

    ``top`` is what the reference names; ``entry`` what the job stores or tags (``top``, or the chosen
    platform's image); ``platforms`` the platforms taken from an index.
    """

    top: Manifest
    entry: Manifest
    manifests: tuple[Manifest, ...]
    images: tuple[Manifest, ...]
    platforms: tuple[str, ...]

    def blobs(self) -> list[Descriptor]:
        """Every config and layer of the images, once each; foreign layers (with ``urls``) are not moved."""
        seen: dict[Digest, Descriptor] = {}
        for image in self.images:
            for desc in (image.config, *image.layers):
                if desc is not None and not desc.urls and desc.digest not in seen:
                    seen[desc.digest] = desc
        return list(seen.values())


async def resolve_image(
    api: RegistryAPI,
    ref: Reference,
    platform: Platform | None = None,
    *,
    chain: EndpointChain | None = None,
    jobs: int = _MANIFEST_JOBS,
    purpose: str = "v2 pull",
    optional: bool = False,
    schema1: bool = False,
) -> ResolvedImage:
    """``ref``'s manifest and, for an index, the image of ``platform`` (default: this machine's) in it.

    ``purpose`` names the job in the error for a schema1 manifest, unless ``schema1`` takes one as the image;
    ``optional`` lets an index without a usable entry resolve to no image (``platform.select_image``).
    """
    chain = chain or EndpointChain((Endpoint(ref),))
    top = await _top(api, ref, chain, None if schema1 else purpose)
    fetch = _verified_children(api, chain, jobs)
    return await select_image(top, platform or host_platform(), fetch, where=f"index {ref}", optional=optional)


async def plan_images(
    api: RegistryAPI,
    ref: Reference,
    *,
    platform: Platform | None,
    all_platforms: bool,
    chain: EndpointChain | None = None,
    jobs: int = _MANIFEST_JOBS,
) -> ImagePlan:
    """What a pull or copy of ``ref`` moves: with ``all_platforms`` an index's whole tree, else ``platform``'s image
    (``resolve_image``)."""
    chain = chain or EndpointChain((Endpoint(ref),))
    top = await _top(api, ref, chain, "v2 pull")
    fetch = _verified_children(api, chain, jobs)
    if all_platforms and top.is_index:
        children = await index_tree(top, fetch, where=f"index {ref}")
        images = tuple(c for c in children if c.kind == "image")
        return ImagePlan(top, top, (*children, top), images, ResolvedImage(top, None).platforms)
    resolved = await select_image(top, platform or host_platform(), fetch, where=f"index {ref}")
    assert resolved.image is not None, "select_image without optional resolves to an image"
    image = resolved.image
    return ImagePlan(top, image, (image,), (image,), () if resolved.platform is None else (resolved.platform,))


async def _top(api: RegistryAPI, ref: Reference, chain: EndpointChain, purpose: str | None) -> Manifest:
    """The manifest ``ref`` names; a schema1 one is refused naming ``purpose`` (None: taken)."""
    # Settled: the blobs are asked first of the endpoint that served the image's own manifest.
    top = await chain.first(f"manifest {ref.reference}", lambda at: api.get_manifest(at.ref), settle=True)
    if top.kind == "schema1" and purpose is not None:
        raise UnsupportedProtocolError(
            f"{ref}: the registry serves only a schema1 manifest; regtool's {purpose} needs schema2 or OCI"
        )
    return top


def _verified_children(api: RegistryAPI, chain: EndpointChain, jobs: int) -> ManifestFetch:
    """Fetches index entries by digest, concurrently, each checked against the size its index gives."""

    async def fetch(entries: Sequence[Descriptor]) -> list[Manifest]:
        results: list[Manifest | None] = [None] * len(entries)

        async def one(i: int) -> None:
            desc = entries[i]
            child = await chain.first(
                f"manifest {desc.digest}", lambda at: api.get_manifest(at.ref.with_digest(desc.digest))
            )
            if child.size != desc.size:
                raise IntegrityError(
                    f"manifest {desc.digest}: size mismatch: index says {desc.size} bytes, got {child.size}"
                )
            results[i] = child

        await run_bounded(range(len(entries)), one, jobs)
        return [r for r in results if r is not None]

    return fetch
