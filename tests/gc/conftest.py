"""A real regtool serve filled by regtool pushes (tests/gc/scene.py), and checks on what the store holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from regtool.digest import Digest
from tests.cli.support import in_process
from tests.gc.scene import Scene, fill
from tests.support.redis import redis_server  # noqa: F401  (the fixture, for the cache test)
from tests.support.seaweedfs import S3Bucket, s3_bucket, seaweedfs  # noqa: F401  (the fixtures, for the s3 driver)
from tests.support.serve import RunningServe, ServeProcess, run_serve


@dataclass
class Filled:
    server: RunningServe | ServeProcess
    scene: Scene
    root: Path


def serve_on(driver: str, request: pytest.FixtureRequest, tmp_path: Path) -> AbstractContextManager[RunningServe]:
    """A real serve on ``driver`` (filesystem, inmemory, or s3 on a fresh SeaweedFS bucket, blobs served, not
    redirected, so a test reads them through serve)."""
    if driver == "s3":
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        return run_serve(None, storage="s3", s3=bucket.settings, storage_redirect=False)
    return run_serve(tmp_path / "registry" if driver == "filesystem" else None)


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[Filled]:
    root = tmp_path / "registry"
    with run_serve(root) as server:
        yield Filled(server, fill(server.url, server.host, tmp_path / "images"), root)


def stored_blobs(root: Path) -> set[Digest]:
    return {Digest.parse(f"{p.parents[2].name}:{p.parent.name}") for p in (root / "blobs").glob("*/*/*/data")}


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_pulls_identical(filled: Filled, tmp: Path) -> None:
    """Every tag serves its manifest and pulls with regtool, every blob pulled being the bytes pushed."""
    accept = {"Accept": f"{mt.OCI_MANIFEST}, {mt.OCI_INDEX}"}
    for tag, digest in filled.scene.tags.items():
        repo, _, reference = tag.partition(":")
        served = httpx.get(f"{filled.server.url}/v2/{repo}/manifests/{reference}", headers=accept)
        assert served.content == filled.scene.blobs[digest]
        dest = tmp / f"pulled-{tag.replace(':', '-')}"
        done = in_process("pull", f"{filled.scene.host}/{tag}", str(dest))
        assert done.returncode == 0, done.stderr
        pulled = {Digest.parse(f"sha256:{p.name}"): p.read_bytes() for p in (dest / "blobs" / "sha256").iterdir()}
        assert len(pulled) >= 3  # a manifest, its config, a layer at least (an index pulls one platform)
        for blob, data in pulled.items():
            assert data == filled.scene.blobs[blob], f"{tag}: {blob} differs"
