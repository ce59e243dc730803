"""One registries.conf, two readers: skopeo (containers/image, whose format it is) and regtool.

The file maps docker.io to a mirror (a real ``regtool serve`` on loopback, ``insecure = true`` for plain HTTP)
and blocks one repository. Both tools pull ``app:1`` (docker.io/library/app:1) from the mirror and get the same
image; both refuse the blocked one. The mirror's request log shows that every manifest and blob came from it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio
import pytest

from regtool.client import Client
from regtool.digest import Digest
from regtool.reference import Reference
from tests.cli.support import regtool
from tests.conftest import require_binary
from tests.support.images import write_image
from tests.support.serve import run_serve

pytestmark = pytest.mark.interop


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("skopeo")
    return subprocess.run(
        [binary, "--insecure-policy", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_skopeo_and_regtool_read_the_same_registries_conf(tmp_path: Path) -> None:
    require_binary("skopeo")
    image = write_image(tmp_path / "src", "1", [{"etc/motd": b"from the mirror\n"}], docker=True)
    with run_serve(tmp_path / "mirror") as mirror:

        async def push() -> None:
            async with Client(use_docker_config=False) as client:
                await client.push(f"{tmp_path / 'src'}:1", Reference.parse(f"{mirror.host}/library/app:1"))

        anyio.run(push)
        conf = tmp_path / "registries.conf"
        conf.write_text(
            'unqualified-search-registries = ["docker.io"]\n\n'
            '[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
            f'[[registry.mirror]]\nlocation = "{mirror.host}"\ninsecure = true\n\n'
            '[[registry]]\nprefix = "docker.io/library/blocked"\nlocation = "docker.io/library/blocked"\n'
            "blocked = true\n"
        )
        mirror.requests.clear()
        # dir: keeps the manifest as served (oci: would convert a docker manifest).
        source, dest = "docker://docker.io/library/app:1", f"dir:{tmp_path / 'by-skopeo'}"
        copied = _skopeo("--registries-conf", str(conf), "copy", source, dest)
        assert copied.returncode == 0, copied.stderr
        skopeo_gets = [e.path for e in mirror.requests.events("GET") if e.status == 200 and e.path != "/v2/"]
        mirror.requests.clear()
        pulled = regtool(
            "pull", "--json", "--registries-conf", str(conf), "app:1", str(tmp_path / "by-regtool"), cwd=tmp_path
        )
        assert pulled.returncode == 0, pulled.stderr
        regtool_gets = [e.path for e in mirror.requests.events("GET") if e.status == 200 and e.path != "/v2/"]
        # The same manifest and blobs, asked of the mirror by both.
        expected = {"/v2/library/app/manifests/1"} | {f"/v2/library/app/blobs/{d}" for d in image.blobs}
        assert set(skopeo_gets) == set(regtool_gets) == expected
        by_skopeo = str(Digest.of((tmp_path / "by-skopeo" / "manifest.json").read_bytes()))
        by_regtool = json.loads(pulled.stdout)["digest"]
        assert by_skopeo == by_regtool == str(image.manifest.digest)

        refused = _skopeo("--registries-conf", str(conf), "inspect", "docker://docker.io/library/blocked:1")
        assert refused.returncode != 0 and "blocked" in refused.stderr
        ours = regtool("pull", "--registries-conf", str(conf), "blocked:1", str(tmp_path / "no"), cwd=tmp_path)
        assert ours.returncode == 2
        why = f"is blocked by {conf} ([[registry]] prefix 'docker.io/library/blocked')"
        assert ours.stderr == f"error: pulling docker.io/library/blocked:1 {why}\n"
        assert not (tmp_path / "no").exists()
