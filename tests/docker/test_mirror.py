"""The cluster picture: the Docker Engine pulls through ``regtool serve`` as its registry mirror.

dockerd runs with ``--registry-mirror http://127.0.0.1:PORT`` (a serve whose ``--proxy-remote`` upstream is
distribution 2.8.2 holding ``library/app:1``); ``docker pull app:1`` (docker.io/library/app:1) is served by the
mirror. Then the upstream is stopped, the image removed from the engine, and the pull still succeeds from the
cache; skopeo and regtool, given one registries.conf naming the mirror, pull it too with the upstream gone.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import anyio
import pytest

from regtool.client import Client
from regtool.digest import Digest
from regtool.reference import Reference
from regtool.server.config import ProxyRemote
from tests.cli.support import regtool
from tests.conftest import require_binary
from tests.support.distribution import run_distribution
from tests.support.dockerd import run_dockerd
from tests.support.images import write_image
from tests.support.serve import run_serve

pytestmark = pytest.mark.interop


def test_docker_pulls_through_serve_as_its_mirror_and_from_the_cache_once_the_upstream_is_gone(
    tmp_path: Path,
) -> None:
    require_binary("docker-registry")
    image = write_image(
        tmp_path / "src", "1", [{"etc/motd": b"through the mirror\n"}, {"bin/app": b"app " * 2000}], docker=True
    )
    # The upstream is stopped in the middle of the test: its own exit stack.
    with contextlib.ExitStack() as upstream_running:
        upstream = upstream_running.enter_context(run_distribution(tmp_path / "distribution"))

        async def seed() -> None:
            async with Client(use_docker_config=False) as client:
                await client.push(f"{tmp_path / 'src'}:1", Reference.parse(f"{upstream.host}/library/app:1"))

        anyio.run(seed)
        with run_serve(tmp_path / "cache", proxy_remotes=(ProxyRemote(upstream.url),)) as cache:
            with run_dockerd(tmp_path / "docker", registry_mirrors=[cache.url]) as engine:
                engine.docker("pull", "app:1")
                info = engine.inspect_image("app:1")
                assert info["Id"] == str(image.config_digest)
                assert info["RootFS"]["Layers"] == list(image.diff_ids)
                # The engine asked the mirror for docker.io's library/app, and the mirror had every byte.
                tag_path = "/v2/library/app/manifests/1"
                digest_path = f"/v2/library/app/manifests/{image.manifest.digest}"
                served = {(e.method, e.path) for e in cache.requests.events() if e.status == 200}
                # The engine resolves the tag (HEAD), then fetches the manifest by digest, then the blobs.
                assert {("HEAD", tag_path), ("GET", digest_path)} <= served
                assert {("GET", f"/v2/library/app/blobs/{d}") for d in image.layer_digests} <= served

                upstream_running.close()
                engine.docker("rmi", "app:1")
                assert engine.docker("image", "inspect", "app:1", check=False).returncode != 0
                cache.requests.clear()
                engine.docker("pull", "app:1")
                assert engine.inspect_image("app:1")["Id"] == str(image.config_digest)
                # The tag was answered from the cache while the upstream was down.
                assert ("HEAD", tag_path, 200) in {(e.method, e.path, e.status) for e in cache.requests.events()}

            # skopeo and regtool read one registries.conf naming the mirror; the upstream is still gone.
            conf = tmp_path / "registries.conf"
            conf.write_text(
                '[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
                f'[[registry.mirror]]\nlocation = "{cache.host}"\ninsecure = true\n'
            )
            skopeo = subprocess.run(
                [
                    require_binary("skopeo"),
                    "--insecure-policy",
                    "--registries-conf",
                    str(conf),
                    "copy",
                    "docker://docker.io/library/app:1",
                    f"dir:{tmp_path / 'by-skopeo'}",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert skopeo.returncode == 0, skopeo.stderr
            by_skopeo = Digest.of((tmp_path / "by-skopeo" / "manifest.json").read_bytes())
            pulled = regtool(
                "pull", "--json", "--registries-conf", str(conf), "app:1", str(tmp_path / "by-regtool"), cwd=tmp_path
            )
            assert pulled.returncode == 0, pulled.stderr
            assert str(by_skopeo) == json.loads(pulled.stdout)["digest"] == str(image.manifest.digest)
