"""Interop on object storage: skopeo and regtool push to and pull from serve on SeaweedFS, following the 307
redirects of blob GETs and HEADs to presigned URLs on the store."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from regtool.client import Client
from regtool.client.v2.rangefetch import SplitPolicy
from regtool.reference import Reference
from regtool.server.storage.s3 import MIN_PART_SIZE
from tests.cli.support import regtool
from tests.conftest import require_binary
from tests.server.layout import write_oci_layout
from tests.support.distribution import run_distribution
from tests.support.seaweedfs import S3Bucket
from tests.support.serve import RunningServe, run_serve

pytestmark = pytest.mark.interop


@pytest.fixture
def s3_serve(s3_bucket: S3Bucket) -> Iterator[RunningServe]:
    with run_serve(None, storage="s3", s3=s3_bucket.settings) as server:
        yield server


def _skopeo(*args: str) -> str:
    binary = require_binary("skopeo")
    result = subprocess.run(
        [binary, "--insecure-policy", *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"skopeo {' '.join(args)}: {result.stderr}"
    return result.stdout


def _redirected_blob_gets(server: RunningServe) -> int:
    return sum(
        1 for e in server.requests.events() if e.method == "GET" and "/blobs/sha256:" in e.path and e.status == 307
    )


def test_skopeo_copies_in_and_out(s3_serve: RunningServe, tmp_path: Path) -> None:
    # One layer larger than a part, so its upload is a multipart upload on the store.
    top, images = write_oci_layout(tmp_path / "src", "v1", layer_count=2, layer_size=2 * MIN_PART_SIZE + 5)
    target = f"docker://{s3_serve.host}/interop/app:v1"
    _skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", target)
    raw = _skopeo("inspect", "--raw", "--tls-verify=false", target)
    assert raw.encode() == top
    s3_serve.requests.clear()
    out = tmp_path / "out"
    _skopeo("copy", "--src-tls-verify=false", target, f"oci:{out}:v1")
    for digest, blob in images[0].blobs.items():
        assert (out / "blobs" / "sha256" / digest[7:]).read_bytes() == blob
    # The bytes came from the store: every blob GET was answered with a redirect.
    assert _redirected_blob_gets(s3_serve) == len(images[0].blobs)


def test_regtool_pushes_and_pulls(s3_serve: RunningServe, tmp_path: Path) -> None:
    top, images = write_oci_layout(tmp_path / "src", "v1", layer_count=3, layer_size=MIN_PART_SIZE + 17)
    ref = f"{s3_serve.host}/interop/regtool:v1"
    pushed = regtool("push", str(tmp_path / "src"), ref, "--json", "-q", cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    with httpx.Client(base_url=s3_serve.url) as http:
        assert http.get("/v2/interop/regtool/manifests/v1").content == top
    s3_serve.requests.clear()
    pulled = regtool("pull", ref, str(tmp_path / "out"), "--json", "-q", cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)
    for digest, blob in images[0].blobs.items():
        assert (tmp_path / "out" / "blobs" / "sha256" / digest[7:]).read_bytes() == blob
    assert _redirected_blob_gets(s3_serve) == len(images[0].blobs)


def test_regtool_split_download_ranges_through_redirects(s3_serve: RunningServe, tmp_path: Path) -> None:
    # Every Range GET of a multi-connection download is redirected, and the store answers each range.
    _top, images = write_oci_layout(tmp_path / "src", "v1", layer_count=1, layer_size=3_000_000)
    ref = Reference.parse(f"{s3_serve.host}/interop/split:v1")
    split = SplitPolicy(threshold=1_000_000, parts=3, remote_only=False)

    async def push_then_pull() -> None:
        async with Client(use_docker_config=False) as client:
            await client.push(f"{tmp_path / 'src'}:v1", ref)
        s3_serve.requests.clear()
        async with Client(use_docker_config=False, split=split) as client:
            await client.pull(ref, tmp_path / "out")

    anyio.run(push_then_pull)
    for digest, blob in images[0].blobs.items():
        assert (tmp_path / "out" / "blobs" / "sha256" / digest[7:]).read_bytes() == blob
    layer = max(images[0].blobs, key=lambda d: len(images[0].blobs[d]))
    ranged = [e for e in s3_serve.requests.events("GET") if e.path.endswith(layer) and e.status == 307]
    assert len(ranged) == 3


def test_distribution_as_a_client_follows_the_redirects(s3_serve: RunningServe, tmp_path: Path) -> None:
    # distribution 2.8.2 as a pull-through cache of serve: its Go registry client fetches serve's blobs through the
    # 307s to the store, and a pull through it gets every byte.
    binary = require_binary("docker-registry")
    _top, images = write_oci_layout(tmp_path / "src", "v1", layer_count=2, layer_size=MIN_PART_SIZE + 3)
    _skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", f"docker://{s3_serve.host}/lib/app:v1")
    s3_serve.requests.clear()
    proxy = f"proxy:\n  remoteurl: {s3_serve.url}\n"
    with run_distribution(tmp_path / "mirror", binary=binary, extra_config=proxy) as mirror:
        _skopeo("copy", "--src-tls-verify=false", f"docker://{mirror.host}/lib/app:v1", f"oci:{tmp_path / 'out'}:v1")
    for digest, blob in images[0].blobs.items():
        assert (tmp_path / "out" / "blobs" / "sha256" / digest[7:]).read_bytes() == blob
    # Every blob GET distribution sent (it may ask for one more than once) was a redirect: no bytes from serve.
    gets = [e for e in s3_serve.requests.events("GET") if "/blobs/sha256:" in e.path]
    assert {e.path.rsplit("/", 1)[1] for e in gets} == set(images[0].blobs)
    assert {e.status for e in gets} == {307}
