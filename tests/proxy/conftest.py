"""Shared pieces of the pull-through cache tests: an upstream regtool serve holding an image, a cache in front of
it (both real servers on loopback ports), and pulls through the client library."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from regtool.client.client import Client
from regtool.client.results import PullResult
from regtool.digest import Digest
from regtool.reference import Reference
from regtool.server.config import ProxyRemote
from regtool.server.storage import paths
from tests.support.images import BuiltImage, write_image
from tests.support.serve import RunningServe, run_serve

__all__ = ["Mirror", "cached_blob", "cached_bytes", "mirror_of", "pull", "push_image", "wait_recorded"]


def push_image(
    registry: str, tmp: Path, repository: str, tag: str, layers: list[dict[str, bytes]], **client_options: Any
) -> BuiltImage:
    """Write an image to a layout under ``tmp`` and push it with regtool to ``registry/repository:tag``."""
    layout = tmp / f"src-{repository.replace('/', '-')}-{tag}"
    image = write_image(layout, tag, layers)

    async def run() -> None:
        async with Client(retries=0, **client_options) as client:
            await client.push(f"{layout}:{tag}", Reference.parse(f"{registry}/{repository}:{tag}"))

    anyio.run(run)
    return image


def pull(reference: str, dest: Path, **client_options: Any) -> PullResult:
    async def run() -> PullResult:
        async with Client(**client_options) as client:
            return await client.pull(Reference.parse(reference), dest)

    return anyio.run(run)


def cached_blob(cache: RunningServe, digest: Digest) -> Path:
    """Where the cache keeps ``digest``'s bytes (the file exists only when it is cached)."""
    assert cache.root is not None
    return cache.root / paths.blob_data(digest)


def wait_recorded(cache: RunningServe, digests: Iterable[Digest], timeout: float = 5.0) -> None:
    """Wait until the cache has recorded every one of ``digests``: a client gets a blob's last byte once it is
    verified, a moment before the cache has stored and recorded it."""
    from regtool.server.proxy.limits import read_records

    wanted = set(digests)
    deadline = time.monotonic() + timeout
    while True:
        recorded = {entry.digest for entry in read_records(cache.app.state.context.driver)}
        if wanted <= recorded or time.monotonic() > deadline:
            assert wanted <= recorded, wanted - recorded
            return
        time.sleep(0.02)


def wait_no_uploads(cache: RunningServe, timeout: float = 5.0) -> None:
    """Wait until the cache holds no upload data: a failed fill's sending threads abort their clients' responses
    as soon as the fetch fails, a moment before the event loop discards the partial file."""
    assert cache.root is not None
    deadline = time.monotonic() + timeout
    while (left := list(cache.root.glob("uploads/*/data"))) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left


def cached_bytes(cache: RunningServe, digest: Digest) -> bytes:
    """The bytes the cache stored for ``digest``, once it has."""
    wait_recorded(cache, [digest])
    return cached_blob(cache, digest).read_bytes()


@dataclass(frozen=True)
class Mirror:
    upstream: RunningServe
    cache: RunningServe
    image: BuiltImage


@contextlib.contextmanager
def mirror_of(upstream_url: str, root: Path, *remotes: ProxyRemote, **overrides: Any) -> Iterator[RunningServe]:
    """A cache (filesystem storage under ``root``) of ``upstream_url`` (and of ``remotes``)."""
    all_remotes = (ProxyRemote(upstream_url), *remotes) if upstream_url else remotes
    with run_serve(root, proxy_remotes=all_remotes, **overrides) as cache:
        yield cache


LAYERS = [{"base.txt": b"base layer " * 5000}, {"app/bin": bytes(range(256)) * 800}]


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    """An upstream regtool serve with ``team/app:1.0`` and a cache of it, both fresh."""
    with run_serve(tmp_path / "upstream") as upstream:
        image = push_image(upstream.host, tmp_path, "team/app", "1.0", LAYERS)
        with mirror_of(upstream.url, tmp_path / "cache") as cache:
            upstream.requests.clear()
            yield Mirror(upstream, cache, image)
