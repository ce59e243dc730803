"""``regtool sync`` reads its source through mirrors (``--mirror``, registries.conf) as pull does, with the source
registry itself down: tags listed, digests resolved and images read at the mirror, named as the source names them."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx

from regtool.client import Client
from regtool.reference import Reference
from tests.cli.support import in_process
from tests.support.distribution import free_port
from tests.support.images import BuiltImage, write_image
from tests.support.serve import run_serve
from tests.sync.support import digest_at, tags_at


def _seed(host: str, tmp_path: Path) -> dict[str, BuiltImage]:
    images = {
        tag: write_image(tmp_path / f"src-{tag}", tag, [{"etc/release": f"release {tag}\n".encode()}])
        for tag in ("1.0", "2.0")
    }

    async def push() -> None:
        async with Client(use_docker_config=False) as client:
            for tag in images:
                await client.push(f"{tmp_path / f'src-{tag}'}:{tag}", Reference.parse(f"{host}/team/app:{tag}"))

    anyio.run(push)
    return images


def test_sync_reads_the_source_through_a_mirror_while_the_source_is_down(tmp_path: Path) -> None:
    source = f"127.0.0.1:{free_port()}"
    with run_serve(None) as mirror, run_serve(None) as dest:
        images = _seed(mirror.host, tmp_path)
        mirror.requests.clear()
        done = in_process("sync", "--mirror", mirror.host, "--retries", "0", f"{source}/team/app", f"{dest.host}/copy")
        assert done.returncode == 0, done.stderr
        assert tags_at(dest.url, "copy/team/app") == ["1.0", "2.0"]
        for tag, image in images.items():
            assert digest_at(dest.url, "copy/team/app", tag) == str(image.manifest.digest)
        asked = {(e.method, e.path) for e in mirror.requests.events() if e.status == 200}
        assert ("GET", "/v2/team/app/tags/list") in asked
        assert {("HEAD", f"/v2/team/app/manifests/{tag}") for tag in images} <= asked

        conf = tmp_path / "registries.conf"
        conf.write_text(f'[[registry]]\nlocation = "{source}"\n[[registry.mirror]]\nlocation = "{mirror.host}"\n')
        into = tmp_path / "dir"
        done = in_process("sync", "--registries-conf", str(conf), "--retries", "0", f"{source}/team/app", str(into))
        assert done.returncode == 0, done.stderr
        index = json.loads((into / "team" / "app" / "index.json").read_text())
        names = {m["annotations"]["io.containerd.image.name"] for m in index["manifests"]}
        assert names == {f"{source}/team/app:{tag}" for tag in images}
        assert {m["digest"] for m in index["manifests"]} == {str(i.manifest.digest) for i in images.values()}


def test_prune_judges_by_the_sources_own_tags_not_a_lagging_mirrors(tmp_path: Path) -> None:
    with run_serve(None) as source, run_serve(None) as mirror, run_serve(None) as dest:
        _seed(source.host, tmp_path / "source")
        _seed(mirror.host, tmp_path / "mirror")
        assert httpx.delete(f"{mirror.url}/v2/team/app/manifests/2.0").status_code == 202  # the mirror lags
        assert in_process("sync", f"{source.host}/team/app", f"{dest.host}/copy").returncode == 0
        pruning = in_process("sync", "--mirror", mirror.host, "--prune", f"{source.host}/team/app", f"{dest.host}/copy")
        assert pruning.returncode == 0, pruning.stderr
        assert "pruned" not in pruning.stdout
        assert tags_at(dest.url, "copy/team/app") == ["1.0", "2.0"]
