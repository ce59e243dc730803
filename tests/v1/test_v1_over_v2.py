"""An image pushed over v1 to a serve with both APIs is there over v2 too, with the digest a v1 pull gives.

Pushes go through regtool's v1 client (the docker engine's order); what is checked comes from the v2 side:
``regtool tags``, ``regtool pull --protocol v2`` (and ``auto``), skopeo, and plain HTTP.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from tests.cli.support import regtool
from tests.conftest import require_binary
from tests.support.serve import RunningServe, run_serve
from tests.v1.images import build_layout, layer_tar


def _pull_digest(host: str, ref: str, dest: Path, protocol: str) -> str:
    pulled = regtool("pull", f"{host}/{ref}", str(dest), "--protocol", protocol, "--json", "-q", cwd=dest.parent)
    assert pulled.returncode == 0, pulled.stderr
    digest: str = json.loads(pulled.stdout)["digest"]
    return digest


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


@pytest.mark.parametrize("storage", ["filesystem", "inmemory"])
def test_a_v1_push_is_listed_pulled_and_inspected_over_v2(tmp_path: Path, storage: str) -> None:
    _, _, layers, _ = build_layout(tmp_path / "src", layers=3, tag="1.0")
    root = tmp_path / "registry" if storage == "filesystem" else None
    with run_serve(root) as server:
        pushed = regtool(
            "push", f"{tmp_path / 'src'}:1.0", f"{server.host}/team/app:1.0", "--protocol", "v1", "-q", cwd=tmp_path
        )
        assert pushed.returncode == 0, pushed.stderr
        assert "over v1" in pushed.stdout

        listed = regtool("tags", f"{server.host}/team/app", cwd=tmp_path)
        assert (listed.returncode, listed.stdout) == (0, "1.0\n"), listed.stderr
        catalog = regtool("catalog", server.host, cwd=tmp_path)
        assert catalog.stdout.splitlines() == ["team/app"], catalog.stderr

        over_v2 = _pull_digest(server.host, "team/app:1.0", tmp_path / "v2", "v2")
        over_auto = _pull_digest(server.host, "team/app:1.0", tmp_path / "auto", "auto")
        over_v1 = _pull_digest(server.host, "team/app:1.0", tmp_path / "v1", "v1")
        # One image, one digest, whichever API it is pulled over.
        assert over_v2 == over_auto == over_v1

        with httpx.Client(base_url=server.url) as http:
            served = http.get("/v2/team/app/manifests/1.0", headers={"Accept": mt.OCI_MANIFEST})
        assert served.status_code == 200
        assert served.headers["Docker-Content-Digest"] == over_v2
        assert "sha256:" + hashlib.sha256(served.content).hexdigest() == over_v2
        document = json.loads(served.content)
        # The layers are the v1 layer blobs as pushed, by their sha256 digests, and they come back byte for byte.
        assert [layer["digest"] for layer in document["layers"]] == [
            "sha256:" + hashlib.sha256(blob).hexdigest() for blob in layers
        ]
        assert {layer["mediaType"] for layer in document["layers"]} == {mt.OCI_LAYER_GZIP}
        for blob in layers:
            assert _blob(tmp_path / "v2", "sha256:" + hashlib.sha256(blob).hexdigest()) == blob
        config = json.loads(_blob(tmp_path / "v2", document["config"]["digest"]))
        assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer_tar(i)).hexdigest() for i in range(3)]
        assert config["config"]["Env"] == ["A=1", "SEED=0"]

        # Writing the tag again (a second v1 push) keeps the digest.
        again = regtool(
            "push", f"{tmp_path / 'src'}:1.0", f"{server.host}/team/app:1.0", "--protocol", "v1", "-q", cwd=tmp_path
        )
        assert again.returncode == 0, again.stderr
        with httpx.Client(base_url=server.url) as http:
            assert http.head("/v2/team/app/manifests/1.0").headers["Docker-Content-Digest"] == over_v2


@pytest.mark.interop
def test_skopeo_sees_a_v1_push(serve: RunningServe, tmp_path: Path) -> None:
    skopeo = require_binary("skopeo")
    _, _, layers, _ = build_layout(tmp_path / "src", layers=2, tag="1.0", seed=7)
    pushed = regtool(
        "push", f"{tmp_path / 'src'}:1.0", f"{serve.host}/team/old:1.0", "--protocol", "v1", "-q", cwd=tmp_path
    )
    assert pushed.returncode == 0, pushed.stderr
    inspected = subprocess.run(
        [skopeo, "--insecure-policy", "inspect", "--tls-verify=false", f"docker://{serve.host}/team/old:1.0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert inspected.returncode == 0, inspected.stderr
    info = json.loads(inspected.stdout)
    assert info["Layers"] == ["sha256:" + hashlib.sha256(blob).hexdigest() for blob in layers]
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")
    assert info["RepoTags"] == ["1.0"]
    copied = subprocess.run(
        [
            skopeo,
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            f"docker://{serve.host}/team/old:1.0",
            f"oci:{tmp_path / 'out'}:1.0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    for blob in layers:
        assert _blob(tmp_path / "out", "sha256:" + hashlib.sha256(blob).hexdigest()) == blob


def test_an_xz_layer_is_shown_decompressed_with_the_digest_a_v1_pull_gives(serve: RunningServe, tmp_path: Path) -> None:
    build_layout(tmp_path / "src", layers=2, tag="1.0", kind="xz")
    pushed = regtool(
        "push", f"{tmp_path / 'src'}:1.0", f"{serve.host}/team/xz:1.0", "--protocol", "v1", "-q", cwd=tmp_path
    )
    assert pushed.returncode == 0, pushed.stderr
    over_v2 = _pull_digest(serve.host, "team/xz:1.0", tmp_path / "v2", "v2")
    assert _pull_digest(serve.host, "team/xz:1.0", tmp_path / "v1", "v1") == over_v2
    with httpx.Client(base_url=serve.url) as http:
        document = http.get("/v2/team/xz/manifests/1.0", headers={"Accept": mt.OCI_MANIFEST}).json()
        # No v2 media type carries xz: the layers are the plain tars, named by their diff_ids.
        assert [layer["mediaType"] for layer in document["layers"]] == [mt.OCI_LAYER, mt.OCI_LAYER]
        for i, layer in enumerate(document["layers"]):
            assert layer["digest"] == "sha256:" + hashlib.sha256(layer_tar(i)).hexdigest()
            assert http.get(f"/v2/team/xz/blobs/{layer['digest']}").content == layer_tar(i)


def test_deleting_the_v1_tag_takes_back_its_v2_tag_only(serve: RunningServe, tmp_path: Path) -> None:
    build_layout(tmp_path / "src", layers=1, tag="1.0")
    for tag in ("1.0", "2.0"):
        pushed = regtool(
            "push", f"{tmp_path / 'src'}:1.0", f"{serve.host}/team/app:{tag}", "--protocol", "v1", "-q", cwd=tmp_path
        )
        assert pushed.returncode == 0, pushed.stderr
    # 2.0 is pushed over v2 since: its v2 tag now names another image and stays when the v1 tag goes.
    build_layout(tmp_path / "other", layers=1, tag="2.0", seed=3)
    over_v2 = regtool(
        "push", f"{tmp_path / 'other'}:2.0", f"{serve.host}/team/app:2.0", "--protocol", "v2", "-q", cwd=tmp_path
    )
    assert over_v2.returncode == 0, over_v2.stderr
    with httpx.Client(base_url=serve.url) as http:
        assert http.get("/v2/team/app/tags/list").json()["tags"] == ["1.0", "2.0"]
        assert http.delete("/v1/repositories/team/app/tags/1.0").status_code == 200
        assert http.delete("/v1/repositories/team/app/tags/2.0").status_code == 200
        assert http.get("/v2/team/app/tags/list").json()["tags"] == ["2.0"]
        assert http.get("/v1/repositories/team/app/tags").json() == {}
