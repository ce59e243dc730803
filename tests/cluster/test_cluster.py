"""Several ``regtool serve`` instances behind haproxy: any request may land on any instance, one instance may die
mid-transfer, pushes may race, Redis may go away; every push and pull still ends byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from regtool.manifest import Manifest
from tests.cluster.conftest import PASSWORD, USER, Cluster
from tests.support.images import write_image, write_random_image

pytestmark = pytest.mark.interop

UPLOAD_ROUTE = "/blobs/uploads/"
BLOB_ROUTE = "/blobs/{digest}"


def regtool(cluster: Cluster, *args: str) -> subprocess.Popen[bytes]:
    """``regtool ARGS`` with the cluster's credentials, retrying patiently (an instance may die under it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "regtool", *args, "--retries", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **cluster.client_env()},
    )


def finish(process: subprocess.Popen[bytes], timeout: float = 300) -> str:
    """Wait for the command; its stdout (the --json result) once it has exited 0."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"exit {process.returncode}: {err.decode()[-2000:]}"
    return out.decode()


def layout_blobs(layout: Path) -> dict[str, str]:
    """digest -> sha256 of the bytes actually stored, for every blob of an OCI layout."""
    found = {}
    for path in (layout / "blobs" / "sha256").iterdir():
        hasher = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                hasher.update(chunk)
        found[f"sha256:{path.name}"] = f"sha256:{hasher.hexdigest()}"
    return found


def assert_pulled_identical(pulled: Path, manifest: Manifest) -> None:
    blobs = layout_blobs(pulled)
    expected = {str(manifest.digest), str(manifest.config.digest), *(str(d.digest) for d in manifest.layers)}
    assert expected <= set(blobs)
    assert all(blobs[d] == d for d in expected), "a pulled blob does not hash to its name"


def instance_log(cluster: Cluster, n: int) -> str:
    path = cluster.instances[n].log_path
    return path.read_text(errors="replace")


def test_one_push_and_pull_are_served_by_every_instance(cluster: Cluster, tmp_path: Path) -> None:
    image = write_image(tmp_path / "src", "1.0", [{f"f{i}.txt": os.urandom(200_000)} for i in range(6)])
    finish(regtool(cluster, "push", str(tmp_path / "src"), f"{cluster.host}/team/app:1.0"))
    uploads = cluster.requests_by_instance(UPLOAD_ROUTE)
    assert sum(1 for n in uploads if n > 0) >= 2, f"upload requests per instance: {uploads}"

    finish(regtool(cluster, "pull", f"{cluster.host}/team/app:1.0", str(tmp_path / "pulled")))
    assert_pulled_identical(tmp_path / "pulled", image.manifest)
    gets = cluster.requests_by_instance(BLOB_ROUTE, "GET")
    assert sum(1 for n in gets if n > 0) >= 2, f"blob GETs per instance: {gets}"
    # Every instance's access log shows requests of this one push and pull.
    assert all("/v2/team/app/" in instance_log(cluster, n) for n in range(3))


@pytest.mark.slow
def test_kill_nine_one_instance_mid_push_and_another_mid_pull(cluster: Cluster, tmp_path: Path) -> None:
    manifest = write_random_image(tmp_path / "src", "big", count=16, size=32 << 20, gzip_layers=False)
    ref = f"{cluster.host}/team/big:1"
    push = regtool(cluster, "push", str(tmp_path / "src"), ref, "--jobs", "4", "--json")
    # Killed while it receives blob bytes (a PUT with a body: the push's monolithic uploads; the manifests come
    # last): the push loses at least that upload and must retry it elsewhere.
    kill_mid_request(cluster, 0, "PUT", push)
    pushed = json.loads(finish(push))
    assert pushed["retries"] >= 1

    pulled = tmp_path / "pulled"
    pull = regtool(cluster, "pull", ref, str(pulled), "--jobs", "4", "--json")

    def arriving() -> bool:  # the manifest is done, blobs come
        return any((pulled / "blobs").rglob("*"))

    if cluster.storage == "s3":
        # Blob bytes come from the store (307 to a presigned URL): the instance answers the redirects only.
        wait_for(arriving, "blobs arriving", pull)
        cluster.instances[1].kill()
        finish(pull)
    else:
        # Killed while it sends a blob (scrapes go to the debug address: every GET it counts is the pull's).
        wait_for(arriving, "blobs arriving", pull)
        kill_mid_request(cluster, 1, "GET", pull)
        assert json.loads(finish(pull))["retries"] >= 1
    assert_pulled_identical(pulled, manifest)
    assert cluster.balancer.servers_up() == 1


def kill_mid_request(cluster: Cluster, n: int, method: str, process: subprocess.Popen[bytes]) -> None:
    """SIGKILL instance ``n`` while it holds a request of the transfer: stopped (SIGSTOP) as soon as its metrics
    show a ``method`` request in flight, it can finish nothing more, so once haproxy has relayed what was already
    in the sockets, its count of the requests it has there says whether one is still unfinished; if that one
    ended between the scrape and the stop, the instance is resumed and watched again. So the kill always costs the
    transfer a request (which its retries must cover)."""
    instance = cluster.instances[n].process
    while True:
        wait_for(
            lambda: cluster.metric(n, "registry_http_requests_in_flight", method=method) >= 1,
            f"a {method} on instance {n}",
            process,
        )
        instance.send_signal(signal.SIGSTOP)
        time.sleep(0.3)
        if cluster.balancer.sessions(n) >= 1:
            cluster.instances[n].kill()
            return
        instance.send_signal(signal.SIGCONT)


def wait_for(condition: object, what: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if callable(condition) and condition():
                return
        except (OSError, httpx.HTTPError):
            pass
        assert process is None or process.poll() is None, f"the transfer ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_concurrent_pushes_of_one_tag_leave_one_whole_image(cluster: Cluster, tmp_path: Path) -> None:
    images = [
        write_image(tmp_path / f"src{n}", "1.0", [{f"n{n}-{i}.bin": os.urandom(300_000)} for i in range(4)])
        for n in range(4)
    ]
    ref = f"{cluster.host}/team/race:latest"
    pushes = [regtool(cluster, "push", str(tmp_path / f"src{n}"), ref) for n in range(4)]
    for push in pushes:
        finish(push)

    # On s3 a blob GET is a 307 to the store, as clients follow it.
    with httpx.Client(base_url=cluster.balancer.url, timeout=30, follow_redirects=True) as client:
        token = client.get(
            "/token", params={"service": "regtool", "scope": "repository:team/race:pull"}, auth=(USER, PASSWORD)
        ).json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        tagged = client.get("/v2/team/race/manifests/latest", headers=accept)
        assert tagged.status_code == 200
        winners = [image for image in images if str(image.manifest.digest) == tagged.headers["docker-content-digest"]]
        assert len(winners) == 1, "the tag names none of the pushed images"
        # Every image pushed is whole, by digest, whichever won the tag.
        for image in images:
            stored = client.get(f"/v2/team/race/manifests/{image.manifest.digest}", headers=accept)
            assert stored.content == image.manifest.raw
            for layer in json.loads(stored.content)["layers"]:
                body = client.get(f"/v2/team/race/blobs/{layer['digest']}").content
                assert "sha256:" + hashlib.sha256(body).hexdigest() == layer["digest"]

    pulled = tmp_path / "pulled"
    finish(regtool(cluster, "pull", ref, str(pulled)))
    assert_pulled_identical(pulled, winners[0].manifest)


def test_redis_down_the_cluster_still_serves(cluster: Cluster, tmp_path: Path) -> None:
    image = write_image(tmp_path / "src", "1.0", [{f"f{i}.txt": os.urandom(100_000)} for i in range(3)])
    finish(regtool(cluster, "push", str(tmp_path / "src"), f"{cluster.host}/team/app:before"))
    cluster.redis.stop()
    finish(regtool(cluster, "push", str(tmp_path / "src"), f"{cluster.host}/team/other:after"))
    finish(regtool(cluster, "pull", f"{cluster.host}/team/app:before", str(tmp_path / "pulled")))
    assert_pulled_identical(tmp_path / "pulled", image.manifest)
    assert httpx.get(f"{cluster.balancer.url}/debug/health").status_code == 200
    failures = [instance_log(cluster, n).count("redis cache at") for n in range(3)]
    assert max(failures) == 1 and sum(failures) >= 2, f"redis failures logged per instance: {failures}"
    assert all(" 500 " not in instance_log(cluster, n) for n in range(3))
