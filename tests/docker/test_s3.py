"""The Docker Engine against ``regtool serve --storage s3`` (SeaweedFS): it follows the 307 of every blob GET to a
presigned URL on the store when it pulls, and pushes through multipart uploads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from regtool.client import Client
from regtool.reference import Reference
from tests.support.dockerd import Dockerd
from tests.support.images import write_image
from tests.support.seaweedfs import S3Bucket, SeaweedFS
from tests.support.serve import RunningServe, run_serve

pytestmark = pytest.mark.interop


@pytest.fixture
def s3_registry(s3_bucket: S3Bucket) -> Iterator[RunningServe]:
    with run_serve(None, storage="s3", s3=s3_bucket.settings) as server:
        yield server


def test_docker_pulls_through_redirects_and_pushes(
    dockerd: Dockerd, s3_registry: RunningServe, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    image = write_image(
        tmp_path / "src", "1", [{"etc/motd": b"hello s3\n"}, {"bin/big": bytes(range(256)) * 50_000}], docker=True
    )
    name = f"{s3_registry.host}/team/app:1"

    async def push() -> None:
        async with Client(use_docker_config=False) as client:
            await client.push(f"{tmp_path / 'src'}:1", Reference.parse(name))

    anyio.run(push)
    s3_registry.requests.clear()
    dockerd.docker("pull", name)
    info = dockerd.inspect_image(name)
    assert info["Id"] == str(image.config_digest)
    assert info["RootFS"]["Layers"] == list(image.diff_ids)
    redirected = [e for e in s3_registry.requests.events("GET") if "/blobs/" in e.path and e.status == 307]
    assert len(redirected) == len(image.layer_digests) + 1  # the layers and the config, all from the store

    # A push into another registry on another bucket: the bytes go up, nothing can be mounted.
    with seaweedfs.bucket() as settings, run_serve(None, storage="s3", s3=settings) as other:
        target = f"{other.host}/pushed/app:1"
        dockerd.docker("tag", name, target)
        dockerd.docker("push", target)
        assert sum(e.received for e in other.requests.events("PATCH")) > 0

        async def inspect() -> tuple[str, ...]:
            async with Client(use_docker_config=False) as client:
                got = await client.inspect(Reference.parse(target))
            return (str(got.config_digest), *(str(layer.digest) for layer in got.layers))

        assert anyio.run(inspect)[0] == str(image.config_digest)
