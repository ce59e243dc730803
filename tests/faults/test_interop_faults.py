"""The same faults with Debian's docker-registry (distribution 2.8.2) behind the proxy: regtool's resume works
against the reference registry, not only against its own server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regtool.manifest import Manifest
from tests.cli.support import regtool
from tests.faults.conftest import REPOSITORY, push_with_client
from tests.support.distribution import Distribution, distribution  # noqa: F401  (the fixture)
from tests.support.faultproxy import Fault, FaultProxy, run_fault_proxy

pytestmark = pytest.mark.interop
UPLOADS = r"/blobs/uploads/"


@pytest.fixture
def dproxy(distribution: Distribution) -> Iterator[FaultProxy]:  # noqa: F811
    with run_fault_proxy(distribution.port) as running:
        yield running


def _state_env(tmp_path: Path) -> dict[str, str]:
    return {"REGTOOL_STATE_DIR": str(tmp_path / "state")}


def test_pull_resumes_with_range_from_distribution(
    tmp_path: Path,
    distribution: Distribution,  # noqa: F811
    dproxy: FaultProxy,
    source: tuple[Path, Manifest],
) -> None:
    path, manifest = source
    push_with_client(f"{path}:1.0", f"{distribution.host}/{REPOSITORY}:1.0", plain_http=True)
    layer = manifest.layers[0]
    dproxy.add(Fault.drop(after=900_000, path=f"/blobs/{layer.digest}"))
    proc = regtool("pull", f"{dproxy.host}/{REPOSITORY}:1.0", "out", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    blob = tmp_path / "out" / "blobs" / "sha256" / layer.digest.encoded
    assert blob.read_bytes() == (path / "blobs" / "sha256" / layer.digest.encoded).read_bytes()
    assert [e.status for e in dproxy.exchanges("GET", f"/blobs/{layer.digest}")] == [200, 206]
    assert dproxy.body_bytes("GET", f"/blobs/{layer.digest}") == layer.size


def test_push_cut_mid_upload_completes_on_distribution(
    tmp_path: Path,
    distribution: Distribution,  # noqa: F811
    dproxy: FaultProxy,
    source: tuple[Path, Manifest],
) -> None:
    _, manifest = source
    layer = manifest.layers[0]
    dproxy.add(Fault.drop_request(after=900_000, method="PUT", path=UPLOADS))
    proc = regtool(
        "push",
        "src:1.0",
        f"{dproxy.host}/{REPOSITORY}:1.0",
        "-q",
        "--jobs",
        "1",
        cwd=tmp_path,
        env=_state_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    with httpx.Client(base_url=distribution.url) as http:
        got = http.get(f"/v2/{REPOSITORY}/blobs/{layer.digest}")
        assert got.content == (tmp_path / "src" / "blobs" / "sha256" / layer.digest.encoded).read_bytes()
        tagged = http.get(f"/v2/{REPOSITORY}/manifests/1.0", headers={"Accept": manifest.media_type})
        assert tagged.content == manifest.raw
    # Whatever distribution kept of the cut request, the retry asked it first (GET upload status).
    assert dproxy.exchanges("GET", UPLOADS)
    assert not os.listdir(tmp_path / "state")


def test_chunked_push_resumes_across_runs_on_distribution(
    tmp_path: Path,
    distribution: Distribution,  # noqa: F811
    dproxy: FaultProxy,
    source: tuple[Path, Manifest],
) -> None:
    _, manifest = source
    layer = manifest.layers[0]
    # The third chunk is refused (503) and the run has no retries: it fails with two chunks acknowledged.
    dproxy.add(Fault.status(503, method="PATCH", path=UPLOADS, skip=2))
    args = ("push", "src:1.0", f"{dproxy.host}/{REPOSITORY}:1.0", "-q", "--jobs", "1", "--chunk-size", "512KiB")
    first = regtool(*args, "--retries", "0", cwd=tmp_path, env=_state_env(tmp_path))
    assert first.returncode == 1, first.stderr
    dproxy.reset_counts()
    second = regtool(*args, cwd=tmp_path, env=_state_env(tmp_path))
    assert second.returncode == 0, second.stderr
    assert manifest.config is not None
    # Only what distribution had not acknowledged went up again.
    assert dproxy.upload_bytes(path=UPLOADS) == layer.size - 2 * 512 * 1024 + manifest.config.size
    with httpx.Client(base_url=distribution.url) as http:
        got = http.get(f"/v2/{REPOSITORY}/blobs/{layer.digest}")
        assert got.content == (tmp_path / "src" / "blobs" / "sha256" / layer.digest.encoded).read_bytes()


def test_chunk_cut_mid_body_on_distribution_starts_a_new_session(
    tmp_path: Path,
    distribution: Distribution,  # noqa: F811
    dproxy: FaultProxy,
    source: tuple[Path, Manifest],
) -> None:
    _, manifest = source
    layer = manifest.layers[0]
    # distribution keeps the part of a cut chunk and then refuses the session's saved _state (its offset no
    # longer matches): the next run notices (GET upload status fails) and uploads in a new session.
    dproxy.add(Fault.drop_request(after=10_000, method="PATCH", path=UPLOADS, skip=2))
    args = ("push", "src:1.0", f"{dproxy.host}/{REPOSITORY}:1.0", "-q", "--jobs", "1", "--chunk-size", "512KiB")
    first = regtool(*args, "--retries", "0", cwd=tmp_path, env=_state_env(tmp_path))
    assert first.returncode == 6, first.stderr
    second = regtool(*args, cwd=tmp_path, env=_state_env(tmp_path))
    assert second.returncode == 0, second.stderr
    with httpx.Client(base_url=distribution.url) as http:
        got = http.get(f"/v2/{REPOSITORY}/blobs/{layer.digest}")
        assert got.content == (tmp_path / "src" / "blobs" / "sha256" / layer.digest.encoded).read_bytes()
        tagged = http.get(f"/v2/{REPOSITORY}/manifests/1.0", headers={"Accept": manifest.media_type})
        assert tagged.content == manifest.raw
