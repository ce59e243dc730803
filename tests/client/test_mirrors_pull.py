"""Pulls, inspect, tags and copy through mirrors, against real ``regtool serve`` instances.

Each test has a primary registry and a mirror (two serves); registries.conf maps the primary's name to the
mirror. What each serve was asked is read from its request log, so "served by the mirror" is checked at the
servers, not taken from regtool's own report.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from rich.console import Console

from regtool.cli.progress import open_progress
from regtool.client import Client
from regtool.client.mirrors import RegistriesConf, parse_mirror_url, parse_registries_conf
from regtool.digest import Digest
from regtool.errors import NotFoundError, UsageError
from regtool.image.oci_layout import OciLayout
from regtool.reference import Reference
from regtool.server.storage import paths
from tests.auth.support import run_auth_serve
from tests.cli.support import Reply, regtool, scripted_server
from tests.support.distribution import free_port
from tests.support.images import BuiltImage, write_image
from tests.support.pki import make_pki
from tests.support.serve import RunningServe, run_serve

pytestmark = pytest.mark.anyio


class Events:
    """A Progress that keeps the library's events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def start(self, key: str, description: str, total: int | None) -> None:
        pass

    def advance(self, key: str, nbytes: int) -> None:
        pass

    def finish(self, key: str, *, status: str = "done") -> None:
        pass

    def event(self, name: str, **fields: Any) -> None:
        self.events.append((name, fields))

    def served(self) -> dict[str, str]:
        """``what`` -> the endpoint that served it."""
        return {f["what"]: f["endpoint"] for n, f in self.events if n == "endpoint" and f["outcome"] == "served"}


def conf_for(primary: str, *mirrors: str, extra: str = "") -> RegistriesConf:
    text = f'[[registry]]\nlocation = "{primary}"\n' + extra
    for mirror in mirrors:
        text += f'[[registry.mirror]]\nlocation = "{mirror}"\n'
    return parse_registries_conf(text, source="test.conf")


def _image(tmp_path: Path) -> BuiltImage:
    return write_image(tmp_path / "src", "1", [{"etc/motd": b"hello mirror"}, {"bin/app": b"\x7fELF" + bytes(3000)}])


async def _push(layout: Path, ref: str) -> None:
    async with Client(use_docker_config=False) as client:
        await client.push(f"{layout}:1", Reference.parse(ref))


def _blob_gets(server: RunningServe) -> list[str]:
    return [e.path for e in server.requests.events("GET", "/blobs/") if e.status == 200]


def _check_layout(dest: Path, image: BuiltImage, name: str) -> None:
    layout = OciLayout.open(dest)
    (entry,) = layout.entries()
    assert entry.digest == image.manifest.digest
    assert entry.annotations["io.containerd.image.name"] == name
    for digest, data in image.blobs.items():
        assert (dest / "blobs" / digest.algorithm / digest.encoded).read_bytes() == data


async def test_pull_served_by_the_mirror_is_named_as_asked(tmp_path: Path) -> None:
    image = _image(tmp_path)
    with run_serve(None) as primary, run_serve(None) as mirror:
        await _push(tmp_path / "src", f"{primary.host}/team/app:1")
        await _push(tmp_path / "src", f"{mirror.host}/team/app:1")
        primary.requests.clear()
        events = Events()
        async with Client(registries=conf_for(primary.host, mirror.host), progress=events) as client:
            result = await client.pull(Reference.parse(f"{primary.host}/team/app:1"), tmp_path / "out")
        assert result.reference == f"{primary.host}/team/app:1" and result.digest == image.manifest.digest
        _check_layout(tmp_path / "out", image, f"{primary.host}/team/app:1")
        # The primary was not asked for anything: the mirror served the manifest and all three blobs.
        assert primary.requests.events() == []
        assert len(_blob_gets(mirror)) == 3
        served = events.served()
        assert served["manifest 1"] == f"{mirror.host}/team/app"
        assert {served[f"blob {d}"] for d in image.blobs} == {f"{mirror.host}/team/app"}


async def test_a_miss_at_the_mirror_falls_back_to_the_primary(tmp_path: Path) -> None:
    image = _image(tmp_path)
    with run_serve(None) as primary, run_serve(None) as mirror:
        await _push(tmp_path / "src", f"{primary.host}/team/app:1")
        events = Events()
        async with Client(registries=conf_for(primary.host, mirror.host), progress=events) as client:
            result = await client.pull(Reference.parse(f"{primary.host}/team/app:1"), tmp_path / "out")
        assert result.digest == image.manifest.digest
        _check_layout(tmp_path / "out", image, f"{primary.host}/team/app:1")
        assert [e.status for e in mirror.requests.events("GET", "/manifests/")] == [404]
        failed = [f for n, f in events.events if n == "endpoint" and f["outcome"] == "failed"]
        assert [(f["endpoint"], f["mirror"]) for f in failed] == [(f"{mirror.host}/team/app", True)]
        assert "NAME_UNKNOWN" in failed[0]["error"] and "HTTP 404" in failed[0]["error"]
        assert set(events.served().values()) == {f"{primary.host}/team/app"}


async def test_a_blob_missing_at_the_mirror_comes_from_the_primary(tmp_path: Path) -> None:
    image = _image(tmp_path)
    missing = image.layer_digests[1]
    with run_serve(None) as primary, run_serve(None, delete_enabled=True) as mirror:
        await _push(tmp_path / "src", f"{primary.host}/team/app:1")
        await _push(tmp_path / "src", f"{mirror.host}/team/app:1")
        assert httpx.delete(f"{mirror.url}/v2/team/app/blobs/{missing}").status_code == 202
        primary.requests.clear()
        events = Events()
        async with Client(registries=conf_for(primary.host, mirror.host), progress=events) as client:
            await client.pull(Reference.parse(f"{primary.host}/team/app:1"), tmp_path / "out")
        _check_layout(tmp_path / "out", image, f"{primary.host}/team/app:1")
        # Only that blob was asked of the primary.
        assert _blob_gets(primary) == [f"/v2/team/app/blobs/{missing}"]
        assert primary.requests.events("GET", "/manifests/") == []
        assert events.served()[f"blob {missing}"] == f"{primary.host}/team/app"


async def test_the_primary_down_the_mirror_serves_and_a_dead_mirror_is_skipped(tmp_path: Path) -> None:
    image = _image(tmp_path)
    dead = f"127.0.0.1:{free_port()}"
    with run_serve(None) as mirror:
        await _push(tmp_path / "src", f"{mirror.host}/team/app:1")
        primary = f"127.0.0.1:{free_port()}"
        conf = conf_for(primary, dead, mirror.host)
        events = Events()
        async with Client(registries=conf, retries=0, progress=events) as client:
            result = await client.pull(Reference.parse(f"{primary}/team/app:1"), tmp_path / "out")
            tags = await client.tags(Reference.parse_repository(f"{primary}/team/app"))
            inspected = await client.inspect(Reference.parse(f"{primary}/team/app:1"))
        # The dead mirror was tried once (the connection opened ahead of the first manifest), then left alone by
        # everything this client did.
        failed = [f for n, f in events.events if n == "endpoint" and f["outcome"] == "failed"]
        assert [f["endpoint"] for f in failed] == [f"{dead}/team/app"]
        assert set(events.served().values()) == {f"{mirror.host}/team/app"}
        assert result.digest == image.manifest.digest == inspected.digest
        assert inspected.reference == f"{primary}/team/app:1"
        assert tags == ["1"]
        _check_layout(tmp_path / "out", image, f"{primary}/team/app:1")


async def test_everything_failing_raises_the_primarys_error_with_the_mirrors(tmp_path: Path) -> None:
    with run_serve(None) as primary, run_serve(None) as mirror:
        async with Client(registries=conf_for(primary.host, mirror.host), retries=0) as client:
            with pytest.raises(NotFoundError) as caught:
                await client.pull(Reference.parse(f"{primary.host}/team/nothing:1"), tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message
    assert f"the mirrors did not serve it either: {mirror.host}/team/nothing:" in message
    assert not (tmp_path / "out").exists()


async def test_digest_only_mirror_is_not_asked_for_a_tag(tmp_path: Path) -> None:
    image = _image(tmp_path)
    with run_serve(None) as primary, run_serve(None) as mirror:
        await _push(tmp_path / "src", f"{primary.host}/team/app:1")
        await _push(tmp_path / "src", f"{mirror.host}/team/app:1")
        mirror.requests.clear()
        text = (
            f'[[registry]]\nlocation = "{primary.host}"\n'
            f'[[registry.mirror]]\nlocation = "{mirror.host}"\npull-from-mirror = "digest-only"\n'
        )
        async with Client(registries=parse_registries_conf(text)) as client:
            await client.pull(Reference.parse(f"{primary.host}/team/app:1"), tmp_path / "by-tag")
            assert mirror.requests.events() == []
            primary.requests.clear()
            by_digest = Reference.parse(f"{primary.host}/team/app@{image.manifest.digest}")
            await client.pull(by_digest, tmp_path / "by-digest")
        assert len(_blob_gets(mirror)) == 3
        assert primary.requests.events() == []


async def test_copy_reads_from_the_mirror_and_pushes_to_the_target(tmp_path: Path) -> None:
    image = _image(tmp_path)
    with run_serve(None) as mirror, run_serve(None) as target:
        await _push(tmp_path / "src", f"{mirror.host}/team/app:1")
        primary = f"127.0.0.1:{free_port()}"
        registries = RegistriesConf().with_mirrors([parse_mirror_url(f"http://{mirror.host}")])
        async with Client(registries=registries, retries=0) as client:
            result = await client.copy(
                Reference.parse(f"{primary}/team/app:1"), Reference.parse(f"{target.host}/copied/app:1")
            )
            assert result.digest == image.manifest.digest
            # The target was pushed to as named: mirrors are for reading only.
            async with httpx.AsyncClient() as http:
                got = await http.get(
                    f"{target.url}/v2/copied/app/manifests/1", headers={"Accept": image.manifest.media_type}
                )
        assert Digest.of(got.content) == image.manifest.digest


async def test_blocked_is_a_usage_error(tmp_path: Path) -> None:
    conf = parse_registries_conf('[[registry]]\nlocation = "127.0.0.1:9"\nblocked = true\n', source="b.conf")
    async with Client(registries=conf) as client:
        with pytest.raises(UsageError, match=r"pulling 127.0.0.1:9/a/b:1 is blocked by b.conf"):
            await client.pull(Reference.parse("127.0.0.1:9/a/b:1"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_registries_conf_json_events_and_v1_file_refused(tmp_path: Path) -> None:
    image = _image(tmp_path)
    with run_serve(None) as mirror:
        anyio.run(_push, tmp_path / "src", f"{mirror.host}/team/app:1")
        primary = f"127.0.0.1:{free_port()}"
        conf = tmp_path / "registries.conf"
        conf.write_text(f'[[registry]]\nlocation = "{primary}"\n[[registry.mirror]]\nlocation = "{mirror.host}"\n')
        done = regtool(
            "pull", "--json", "--registries-conf", str(conf), f"{primary}/team/app:1", str(tmp_path / "o"), cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stderr.splitlines()]
        endpoints = [e for e in lines if e["event"] == "endpoint"]
        assert {(e["what"], e["endpoint"], e["outcome"]) for e in endpoints} == {
            (what, f"{mirror.host}/team/app", "served") for what in ["manifest 1", *(f"blob {d}" for d in image.blobs)]
        }
        verbose = regtool("inspect", "-v", "--mirror", mirror.host, f"{primary}/team/app:1", cwd=tmp_path)
        assert verbose.returncode == 0, verbose.stderr
        assert f"manifest 1 served by mirror {mirror.host}/team/app" in verbose.stderr
    v1 = tmp_path / "v1.conf"
    v1.write_text("[registries.search]\nregistries = ['docker.io']\n")
    refused = regtool("tags", "--registries-conf", str(v1), "127.0.0.1:9/a/b", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0
    assert refused.stderr.startswith(f"error: {v1} is in the version 1 format")


async def test_bad_bytes_at_the_mirror_are_refused_and_fetched_from_the_primary(tmp_path: Path) -> None:
    image = _image(tmp_path)
    corrupted = image.layer_digests[0]
    with run_serve(None) as primary, run_serve(tmp_path / "mirror") as mirror:
        await _push(tmp_path / "src", f"{primary.host}/team/app:1")
        await _push(tmp_path / "src", f"{mirror.host}/team/app:1")
        assert mirror.root is not None
        blob = mirror.root / paths.blob_data(corrupted)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
        events = Events()
        async with Client(registries=conf_for(primary.host, mirror.host), progress=events) as client:
            await client.pull(Reference.parse(f"{primary.host}/team/app:1"), tmp_path / "out")
        _check_layout(tmp_path / "out", image, f"{primary.host}/team/app:1")
        (failed,) = [f for n, f in events.events if n == "endpoint" and f["outcome"] == "failed"]
        assert failed["what"] == f"blob {corrupted}" and "digest" in failed["error"]
        assert _blob_gets(primary) == [f"/v2/team/app/blobs/{corrupted}"]


async def test_a_failing_mirror_5xx_falls_back(tmp_path: Path) -> None:
    image = _image(tmp_path)
    with run_serve(None) as primary, scripted_server({}, Reply(503, b"overloaded")) as broken:
        await _push(tmp_path / "src", f"{primary.host}/team/app:1")
        events = Events()
        async with Client(registries=conf_for(primary.host, broken.host), retries=0, progress=events) as client:
            await client.pull(Reference.parse(f"{primary.host}/team/app:1"), tmp_path / "out")
        _check_layout(tmp_path / "out", image, f"{primary.host}/team/app:1")
        (failed,) = [f for n, f in events.events if n == "endpoint" and f["outcome"] == "failed"]
        assert "503" in failed["error"]
        # Only the manifest was asked of it: the blobs start at the endpoint that served the manifest.
        assert [p for p in broken.seen if "/blobs/" in p] == []


async def test_insecure_mirror_skips_tls_verification_for_that_host_only(tmp_path: Path) -> None:
    image = _image(tmp_path)
    pki = make_pki(tmp_path / "pki")
    with run_serve(None) as primary, run_auth_serve(tls=(pki.server_cert, pki.server_key)) as mirror:
        await _push(tmp_path / "src", f"{primary.host}/team/app:1")
        async with Client(ca_cert=pki.ca_cert, use_docker_config=False) as trusting:
            await trusting.push(f"{tmp_path / 'src'}:1", Reference.parse(f"{mirror.host}/team/app:1"))
        verified = conf_for(primary.host, mirror.host)
        unverified = parse_registries_conf(
            f'[[registry]]\nlocation = "{primary.host}"\n[[registry.mirror]]\nlocation = "{mirror.host}"\n'
            "insecure = true\n"
        )
        for registries, served_by in ((verified, primary.host), (unverified, mirror.host)):
            primary.requests.clear()
            events = Events()
            async with Client(registries=registries, retries=0, progress=events) as client:
                dest = tmp_path / f"out-{served_by.replace(':', '-')}"
                await client.pull(Reference.parse(f"{primary.host}/team/app:1"), dest)
            _check_layout(dest, image, f"{primary.host}/team/app:1")
            assert set(events.served().values()) == {f"{served_by}/team/app"}


def test_a_mirror_that_did_not_serve_is_one_warning_line_for_a_human() -> None:
    stream = io.StringIO()
    with open_progress(json_lines=False, quiet=False, console=Console(file=stream)) as progress:
        progress.event("endpoint", outcome="served", what="manifest 1", endpoint="m:5000/a", mirror=True)
        progress.event("endpoint", outcome="failed", what="blob sha256:ab", endpoint="m:5000/a", mirror=True, error="x")
        # The primary's failure ends the command with its own error line: no warning for it.
        progress.event("endpoint", outcome="failed", what="blob sha256:ab", endpoint="p/a", mirror=False, error="y")
    assert stream.getvalue() == "warning: blob sha256:ab not served by mirror m:5000/a (x)\n"
