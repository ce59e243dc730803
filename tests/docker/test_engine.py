"""The Docker Engine as a client of ``regtool serve``: pull, push (with cross-repository mounts), load of
regtool's docker-archive, and ``docker save`` pushed by regtool and pulled back.

What the engine did is checked at both ends: ``docker image inspect`` (the image ID is the config's digest, the
RootFS layers are the config's diff_ids) and serve's request log (a mount is a ``POST ...?mount=&from=``, and no
blob bytes were uploaded).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import anyio
import pytest

from regtool.client import Client
from regtool.digest import Digest
from regtool.reference import Reference
from tests.support.dockerd import Dockerd, run_dockerd
from tests.support.images import BuiltImage, write_image
from tests.support.serve import RunningServe, run_serve

pytestmark = pytest.mark.interop


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RunningServe]:
    with run_serve(tmp_path / "registry") as server:
        yield server


def _image(tmp_path: Path, text: str) -> BuiltImage:
    return write_image(
        tmp_path / "src",
        "1",
        [{"etc/motd": f"hello {text}\n".encode()}, {"bin/app": b"#!/bin/sh\necho " + text.encode() + b"\n"}],
        docker=True,
    )


def _push(source: str, ref: str) -> None:
    async def main() -> None:
        async with Client(use_docker_config=False) as client:
            await client.push(source, Reference.parse(ref))

    anyio.run(main)


def _pull(ref: str, dest: Path) -> None:
    async def main() -> None:
        async with Client(use_docker_config=False) as client:
            await client.pull(Reference.parse(ref), dest)

    anyio.run(main)


def _archive(path: Path) -> tuple[bytes, list[bytes], list[str]]:
    """A docker-archive's config bytes, layer tars and RepoTags."""
    with tarfile.open(path) as tar:
        (entry,) = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = tar.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
        layers = [tar.extractfile(name).read() for name in entry["Layers"]]  # type: ignore[union-attr]
    return config, layers, entry.get("RepoTags") or []


def _check_engine_image(engine: Dockerd, name: str, image: BuiltImage) -> None:
    info = engine.inspect_image(name)
    assert info["Id"] == str(image.config_digest)
    assert info["RootFS"]["Layers"] == list(image.diff_ids)


def test_docker_pull_from_serve(dockerd: Dockerd, registry: RunningServe, tmp_path: Path) -> None:
    image = _image(tmp_path, "pull")
    name = f"{registry.host}/team/app:1"
    _push(f"{tmp_path / 'src'}:1", name)
    dockerd.docker("pull", name)
    _check_engine_image(dockerd, name, image)
    assert f"{registry.host}/team/app@{image.manifest.digest}" in dockerd.inspect_image(name)["RepoDigests"]


def test_docker_push_mounts_across_repositories(dockerd: Dockerd, registry: RunningServe, tmp_path: Path) -> None:
    image = _image(tmp_path, "mount")
    base = f"{registry.host}/team/base:1"
    _push(f"{tmp_path / 'src'}:1", base)
    dockerd.docker("pull", base)
    other = f"{registry.host}/other/app:1"
    dockerd.docker("tag", base, other)
    registry.requests.clear()
    dockerd.docker("push", other)
    posts = registry.requests.events("POST", "/blobs/uploads/")
    queries = [(parse_qs(e.query), e.status) for e in posts]
    mounted = {q["mount"][0] for q, status in queries if q.get("from") == ["team/base"] and status == 201}
    # Every layer was mounted from team/base (201 Created); only the config (docker does not mount configs)
    # went up as bytes.
    assert mounted == {str(d) for d in image.layer_digests}
    uploads = [parse_qs(e.query) for e in registry.requests.events("PUT") if "/blobs/uploads/" in e.path]
    assert [q["digest"] for q in uploads] == [[str(image.config_digest)]]
    assert sum(e.received for e in registry.requests.events("PATCH")) == len(image.config)

    async def inspect() -> tuple[Digest | None, tuple[Digest, ...]]:
        async with Client(use_docker_config=False) as client:
            got = await client.inspect(Reference.parse(other))
        return got.config_digest, tuple(layer.digest for layer in got.layers)

    assert anyio.run(inspect) == (image.config_digest, image.layer_digests)


def test_docker_load_of_regtools_archive_then_push(dockerd: Dockerd, registry: RunningServe, tmp_path: Path) -> None:
    image = _image(tmp_path, "load")
    name = f"{registry.host}/team/loaded:1"
    _push(f"{tmp_path / 'src'}:1", name)
    _pull(name, tmp_path / "app.tar")
    # The image leaves the registry, so docker cannot have pulled it: it comes from the archive only.
    loaded = dockerd.docker("load", "-i", str(tmp_path / "app.tar"))
    assert f"Loaded image: {name}" in loaded.stdout
    _check_engine_image(dockerd, name, image)
    # An image docker has never seen in a registry is uploaded (docker compresses its layers itself).
    fresh = f"{registry.host}/fresh/app:1"
    dockerd.docker("tag", name, fresh)
    registry.requests.clear()
    dockerd.docker("push", fresh)
    assert [e for e in registry.requests.events("PUT") if "/blobs/uploads/" in e.path]
    _pull(fresh, tmp_path / "fresh.tar")
    config, layers, tags = _archive(tmp_path / "fresh.tar")
    assert config == image.config
    assert [str(Digest.of(layer)) for layer in layers] == list(image.diff_ids)
    assert tags == [fresh]


def test_docker_save_pushed_by_regtool_and_pulled_back(
    dockerd: Dockerd, registry: RunningServe, tmp_path: Path
) -> None:
    image = _image(tmp_path, "save")
    origin = f"{registry.host}/team/origin:1"
    _push(f"{tmp_path / 'src'}:1", origin)
    dockerd.docker("pull", origin)
    dockerd.docker("save", "-o", str(tmp_path / "saved.tar"), origin)
    saved_config, saved_layers, _ = _archive(tmp_path / "saved.tar")
    saved = f"{registry.host}/saved/app:1"
    _push(str(tmp_path / "saved.tar"), saved)
    _pull(saved, tmp_path / "back.tar")
    config, layers, _ = _archive(tmp_path / "back.tar")
    assert config == saved_config == image.config
    assert layers == saved_layers
    assert [str(Digest.of(layer)) for layer in layers] == list(image.diff_ids)
    # And the engine takes what regtool pushed: the same image ID, layer for layer.
    dockerd.docker("rmi", origin)
    dockerd.docker("pull", saved)
    _check_engine_image(dockerd, saved, image)


def test_engine_without_a_cgroup_hierarchy(registry: RunningServe, tmp_path: Path) -> None:
    # As in a CI container that mounts no cgroups: the engine still pulls (it runs no container).
    image = _image(tmp_path, "no cgroups")
    name = f"{registry.host}/team/bare:1"
    _push(f"{tmp_path / 'src'}:1", name)
    with run_dockerd(tmp_path / "docker", without_cgroups=True) as engine:
        engine.docker("pull", name)
        _check_engine_image(engine, name, image)
        info = engine.docker("info")
        # The engine saw no cpu controller: it really ran without the hierarchy.
        assert "No cpu shares support" in info.stdout + info.stderr
