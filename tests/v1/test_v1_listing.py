"""``tags``, ``catalog``, ``inspect`` and ``delete`` over v1: against ``serve --no-v2`` (``--protocol v1``, and
``auto`` turning to v1), and ``auto`` staying on v2 where the registry has it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.support import assert_user_error, regtool
from tests.support.serve import RunningServe, run_serve
from tests.v1.images import build_layout


@pytest.fixture
def v1_only(tmp_path: Path) -> Iterator[RunningServe]:
    """A serve without v2 holding team/app:1.0 and :2.0 and team/other:1.0, pushed over v1."""
    _, _, _, _ = build_layout(tmp_path / "src", layers=2, tag="1.0")
    with run_serve(tmp_path / "registry", enable_v2=False) as server:
        for target in ("team/app:1.0", "team/app:2.0", "team/other:1.0"):
            pushed = regtool(
                "push", f"{tmp_path / 'src'}:1.0", f"{server.host}/{target}", "--protocol", "v1", "-q", cwd=tmp_path
            )
            assert pushed.returncode == 0, pushed.stderr
        yield server


@pytest.mark.parametrize("protocol", ["v1", "auto"])
def test_tags_and_catalog_over_v1(v1_only: RunningServe, tmp_path: Path, protocol: str) -> None:
    host = v1_only.host
    listed = regtool("tags", f"{host}/team/app", "--protocol", protocol, cwd=tmp_path)
    assert (listed.returncode, listed.stdout) == (0, "1.0\n2.0\n"), listed.stderr
    as_json = regtool("tags", f"{host}/team/app", "--protocol", protocol, "--json", cwd=tmp_path)
    assert json.loads(as_json.stdout) == {"repository": f"{host}/team/app", "tags": ["1.0", "2.0"]}
    catalog = regtool("catalog", host, "--protocol", protocol, cwd=tmp_path)
    assert (catalog.returncode, catalog.stdout) == (0, "team/app\nteam/other\n"), catalog.stderr
    missing = regtool("tags", f"{host}/team/nothing", "--protocol", protocol, cwd=tmp_path)
    assert_user_error(missing, 3, "Repository not found")


def test_forcing_v2_on_a_registry_without_it_is_exit_7(v1_only: RunningServe, tmp_path: Path) -> None:
    for args in (["tags", f"{v1_only.host}/team/app"], ["catalog", v1_only.host]):
        assert_user_error(regtool(*args, "--protocol", "v2", cwd=tmp_path), 7, "does not speak registry v2")


def test_inspect_over_v1_reads_the_image_jsons_only(v1_only: RunningServe, tmp_path: Path) -> None:
    ref = f"{v1_only.host}/team/app:1.0"
    with httpx.Client(base_url=v1_only.url) as http:
        top = http.get("/v1/repositories/team/app/tags/1.0").json()
        chain = list(reversed(http.get(f"/v1/images/{top}/ancestry").json()))
        sizes = [int(http.get(f"/v1/images/{i}/json").headers["X-Docker-Size"]) for i in chain]
        top_json = http.get(f"/v1/images/{top}/json").content
    v1_only.requests.clear()
    inspected = regtool("inspect", ref, "--protocol", "v1", "--json", cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    result = json.loads(inspected.stdout)
    assert result["digest"] == f"sha256:{top}"
    assert [layer["digest"] for layer in result["layers"]] == [f"sha256:{i}" for i in chain]
    assert [layer["size"] for layer in result["layers"]] == sizes
    assert (result["os"], result["architecture"]) == ("linux", "amd64")
    assert result["cmd"] == ["/bin/sh"]
    assert result["env"] == ["A=1", "SEED=0"]
    assert not v1_only.requests.events(path_contains="/layer")
    # auto finds v1 the same way; the human form names the image.
    human = regtool("inspect", ref, cwd=tmp_path)
    assert human.returncode == 0, human.stderr
    assert f"sha256:{top}" in human.stdout and "2 layers" in human.stdout
    raw = regtool("inspect", ref, "--raw", "--protocol", "v1", cwd=tmp_path)
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.encode() == top_json
    by_digest = regtool("inspect", f"{v1_only.host}/team/app@sha256:{top}", "--protocol", "v1", cwd=tmp_path)
    assert_user_error(by_digest, 7, "registry v1 has no digests")


def test_delete_over_v1_removes_the_tag(v1_only: RunningServe, tmp_path: Path) -> None:
    host = v1_only.host
    with httpx.Client(base_url=v1_only.url) as http:
        top = http.get("/v1/repositories/team/app/tags/1.0").json()
    deleted = regtool("delete", f"{host}/team/app:1.0", "--protocol", "v1", cwd=tmp_path)
    assert (deleted.returncode, deleted.stdout) == (0, f"deleted {host}/team/app@sha256:{top}\n"), deleted.stderr
    assert regtool("tags", f"{host}/team/app", cwd=tmp_path).stdout == "2.0\n"
    again = regtool("delete", f"{host}/team/app:1.0", cwd=tmp_path)
    assert_user_error(again, 3, "Tag not found")
    by_digest = regtool("delete", f"{host}/team/app@sha256:{top}", "--protocol", "v1", cwd=tmp_path)
    assert_user_error(by_digest, 7, "registry v1 deletes tags, not digests")


def test_auto_stays_on_v2_where_the_registry_has_it(serve: RunningServe, tmp_path: Path) -> None:
    build_layout(tmp_path / "src", layers=1, tag="1.0")
    pushed = regtool("push", f"{tmp_path / 'src'}:1.0", f"{serve.host}/team/app:1.0", "-q", cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    serve.requests.clear()
    assert regtool("tags", f"{serve.host}/team/app", cwd=tmp_path).stdout == "1.0\n"
    # No GET /v2/ first: the listing's own answer shows the v2 API, so auto asks nothing else.
    assert [(e.method, e.path) for e in serve.requests.take()] == [("GET", "/v2/team/app/tags/list")]
    inspected = regtool("inspect", f"{serve.host}/team/app:1.0", "--json", cwd=tmp_path)
    assert json.loads(inspected.stdout)["media_type"] == "application/vnd.oci.image.manifest.v1+json"
    missing = regtool("tags", f"{serve.host}/team/nothing", cwd=tmp_path)
    assert_user_error(missing, 3, "NAME_UNKNOWN")
    assert not serve.requests.events(path_contains="/v1/")
    # Forced v1 on a registry with both APIs lists what was pushed over v1 only.
    v1_push = regtool(
        "push", f"{tmp_path / 'src'}:1.0", f"{serve.host}/team/old:1.0", "--protocol", "v1", "-q", cwd=tmp_path
    )
    assert v1_push.returncode == 0, v1_push.stderr
    assert regtool("catalog", serve.host, "--protocol", "v1", cwd=tmp_path).stdout == "team/old\n"
    assert regtool("catalog", serve.host, cwd=tmp_path).stdout == "team/app\nteam/old\n"
