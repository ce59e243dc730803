"""Interop: Debian's skopeo as a client of regtool serve (copy in and out, inspect, list-tags, delete)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from tests.conftest import require_binary
from tests.server.layout import write_oci_layout
from tests.support.serve import RunningServe

pytestmark = pytest.mark.interop


def skopeo(*args: str) -> str:
    binary = require_binary("skopeo")
    result = subprocess.run(
        [binary, "--insecure-policy", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"skopeo {' '.join(args)}: {result.stderr}"
    return result.stdout


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_copy_in_and_out_inspect_list_tags_delete(server: RunningServe, tmp_path: Path) -> None:
    require_binary("skopeo")
    top, images = write_oci_layout(tmp_path / "src", "v1", layer_count=3)
    image = images[0]
    target = f"docker://{server.host}/interop/app"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", f"{target}:v1")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", f"{target}:v2")

    with httpx.Client(base_url=server.url) as client:
        stored = client.get("/v2/interop/app/manifests/v1")
        assert stored.content == top
        assert stored.headers["content-type"] == mt.OCI_MANIFEST
        for digest, blob in image.blobs.items():
            assert client.get(f"/v2/interop/app/blobs/{digest}").content == blob

    inspected = json.loads(skopeo("inspect", "--tls-verify=false", f"{target}:v1"))
    assert inspected["Digest"] == _digest(top)
    assert inspected["Layers"] == [_digest(layer) for layer in image.layers]
    assert inspected["Architecture"] == "amd64"
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"{target}:v1")
    assert raw.encode() == top
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", target))
    assert sorted(tags["Tags"]) == ["v1", "v2"]

    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", f"{target}:v1", f"oci:{out}:v1")
    for digest, blob in image.blobs.items():
        assert (out / "blobs" / "sha256" / digest[7:]).read_bytes() == blob
    assert (out / "blobs" / "sha256" / _digest(top)[7:]).read_bytes() == top

    skopeo("delete", "--tls-verify=false", f"{target}:v1")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/interop/app/manifests/v1").status_code == 404
        assert client.get(f"/v2/interop/app/manifests/{_digest(top)}").status_code == 404
        assert client.get("/v2/interop/app/tags/list").json()["tags"] == []


def test_copy_multi_arch_index_and_docker_format(server: RunningServe, tmp_path: Path) -> None:
    require_binary("skopeo")
    top, images = write_oci_layout(tmp_path / "src", "multi", arches=("amd64", "arm64"), layer_count=1)
    target = f"docker://{server.host}/interop/multi:latest"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:multi", target)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/interop/multi/manifests/latest").content == top
        for image in images:
            assert client.get(f"/v2/interop/multi/manifests/{_digest(image.manifest)}").content == image.manifest
    out = tmp_path / "out"
    skopeo("copy", "--all", "--src-tls-verify=false", target, f"oci:{out}:multi")
    for image in images:
        for digest, blob in image.blobs.items():
            assert (out / "blobs" / "sha256" / digest[7:]).read_bytes() == blob

    # Docker schema2 conversion on the way in: skopeo writes a new manifest; the layers stay byte-identical.
    docker_target = f"docker://{server.host}/interop/docker:latest"
    skopeo(
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        "--override-arch",
        "arm64",
        target,
        docker_target,
        "--src-tls-verify=false",
    )
    inspected = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", docker_target))
    assert inspected["mediaType"] == mt.DOCKER_MANIFEST_V2
    assert [layer["digest"] for layer in inspected["layers"]] == [_digest(layer) for layer in images[1].layers]
