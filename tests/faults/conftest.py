"""Fixtures of the fault tests: a real ``regtool serve`` holding one image, and a fault proxy in front of it.

The image has a 2 MiB incompressible layer (big enough to cut mid-body, small enough to keep tests quick) and
its config. ``seeded.layer`` / ``seeded.config`` are the descriptors; ``seeded.ref(host)`` names the image on
the server or, through the proxy, ``seeded.ref(proxy.host)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from regtool.client import Client
from regtool.digest import Digest
from regtool.manifest import Descriptor, Manifest
from regtool.reference import Reference
from tests.support.faultproxy import FaultProxy, run_fault_proxy
from tests.support.images import write_random_image
from tests.support.serve import RunningServe, run_serve

LAYER_SIZE = 2 << 20
REPOSITORY = "faults/app"


@dataclass(frozen=True)
class Seeded:
    """The image pushed to the server, and where its source layout is."""

    source: Path
    manifest: Manifest
    server: RunningServe

    @property
    def layer(self) -> Descriptor:
        return self.manifest.layers[0]

    @property
    def config(self) -> Descriptor:
        assert self.manifest.config is not None
        return self.manifest.config

    def ref(self, host: str, tag: str = "1.0") -> str:
        return f"{host}/{REPOSITORY}:{tag}"

    def blob(self, digest: Digest) -> bytes:
        return (self.source / "blobs" / digest.algorithm / digest.encoded).read_bytes()


def push_with_client(source: str, ref: str, **client_options: object) -> None:
    async def main() -> None:
        async with Client(**client_options) as client:  # type: ignore[arg-type]
            await client.push(source, Reference.parse(ref))

    anyio.run(main)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RunningServe]:
    with run_serve(tmp_path / "registry") as server:
        yield server


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, Manifest]:
    """A local OCI layout with one random 2 MiB layer (not pushed)."""
    manifest = write_random_image(tmp_path / "src", "1.0", count=1, size=LAYER_SIZE)
    return tmp_path / "src", manifest


@pytest.fixture
def seeded(registry: RunningServe, source: tuple[Path, Manifest]) -> Seeded:
    path, manifest = source
    push_with_client(f"{path}:1.0", f"{registry.host}/{REPOSITORY}:1.0")
    return Seeded(path, manifest, registry)


@pytest.fixture
def proxy(registry: RunningServe) -> Iterator[FaultProxy]:
    with run_fault_proxy(registry.port) as running:
        yield running
