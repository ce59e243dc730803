"""An interrupted ``copy`` (a cut connection, or Ctrl-C) run again: it continues the target's upload session and
fetches only the rest of the blob from the source, so the rerun sends only what the target lacks.

Two real ``regtool serve`` instances; the target sits behind the fault proxy, which counts the request bytes
relayed to it (and cuts or throttles them).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

from regtool.client import Client
from regtool.client.v2.copy import CopyResult
from regtool.errors import IntegrityError, TransportError
from regtool.manifest import Descriptor, Manifest
from regtool.protocol.ranges import parse_upload_progress
from regtool.reference import Reference
from tests.support.faultproxy import Fault, FaultProxy, run_fault_proxy
from tests.support.images import write_random_image
from tests.support.serve import RunningServe, run_serve

UPLOADS = r"/blobs/uploads/"
LAYER_SIZE = 6 << 20
CUT = 2_500_000


@dataclass(frozen=True)
class Setup:
    source: RunningServe
    target: RunningServe
    proxy: FaultProxy
    manifest: Manifest
    state: Path

    @property
    def layer(self) -> Descriptor:
        return self.manifest.layers[0]

    @property
    def config(self) -> Descriptor:
        assert self.manifest.config is not None
        return self.manifest.config

    @property
    def src(self) -> str:
        return f"{self.source.host}/team/app:1.0"

    @property
    def dest(self) -> str:
        return f"{self.proxy.host}/mirror/app:1.0"

    def blob_file(self, desc: Descriptor) -> Path:
        assert self.source.root is not None
        encoded = desc.digest.encoded
        return self.source.root / "blobs" / "sha256" / encoded[:2] / encoded / "data"


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    state = tmp_path / "state"
    monkeypatch.setenv("REGTOOL_STATE_DIR", str(state))
    manifest = write_random_image(tmp_path / "src", "1.0", count=1, size=LAYER_SIZE)
    with (
        run_serve(tmp_path / "a") as source,
        run_serve(tmp_path / "b") as target,
        run_fault_proxy(target.port) as proxy,
    ):

        async def seed() -> None:
            async with Client() as client:
                await client.push(f"{tmp_path / 'src'}:1.0", Reference.parse(f"{source.host}/team/app:1.0"))

        anyio.run(seed)
        yield Setup(source, target, proxy, manifest, state)


def _copy(setup: Setup, *, retries: int = 3) -> CopyResult:
    """One copy; ``retries=0`` makes a cut upload end the run (else the run continues the session itself)."""

    async def main() -> CopyResult:
        async with Client(jobs=1, retries=retries) as client:  # one blob at a time: the layer (largest) goes first
            return await client.copy(Reference.parse(setup.src), Reference.parse(setup.dest))

    return anyio.run(main)


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _session_holds(setup: Setup) -> int | None:
    """Bytes the remembered upload session holds, by the registry's upload status (None: no session)."""
    (state,) = setup.state.glob("*.json")
    status = httpx.get(json.loads(state.read_text())["location"])
    return parse_upload_progress(status.headers.get("Range")) if status.status_code == 204 else None


def _assert_copied(setup: Setup) -> None:
    with httpx.Client(base_url=setup.target.url) as http:
        for desc in (setup.config, setup.layer):
            got = http.get(f"/v2/mirror/app/blobs/{desc.digest}")
            assert got.status_code == 200
            assert got.content == setup.blob_file(desc).read_bytes()
        tagged = http.get("/v2/mirror/app/manifests/1.0", headers={"Accept": setup.manifest.media_type})
        assert tagged.content == setup.manifest.raw
    assert list(setup.state.glob("*.json")) == []  # finished uploads leave no resume state


def test_a_copy_cut_mid_blob_resumes_with_only_the_rest(setup: Setup) -> None:
    setup.proxy.add(Fault.drop_request(after=CUT, method="PUT", path=UPLOADS))
    with pytest.raises(TransportError):
        _copy(setup, retries=0)
    assert list(setup.state.glob("*.json"))
    _wait_until(lambda: _session_holds(setup) == CUT, "the registry to keep the bytes it received")

    setup.proxy.reset_counts()
    setup.source.requests.clear()
    result = _copy(setup)
    _assert_copied(setup)
    # Only the rest of the layer, and the config the first run never reached, went to the target...
    assert setup.proxy.upload_bytes(path=UPLOADS) == setup.layer.size - CUT + setup.config.size
    assert [e.request_bytes for e in setup.proxy.exchanges("PATCH", UPLOADS)] == [setup.layer.size - CUT]
    # ...and only the rest of the layer came from the source (a Range request).
    layer_gets = [e for e in setup.source.requests.events() if e.method == "GET" and str(setup.layer.digest) in e.path]
    assert [e.sent for e in layer_gets] == [setup.layer.size - CUT]
    assert result.bytes_copied == setup.layer.size - CUT + setup.config.size


def test_a_resumed_blob_whose_source_changed_is_refused_and_not_resumed_again(setup: Setup) -> None:
    setup.proxy.add(Fault.drop_request(after=CUT, method="PUT", path=UPLOADS))
    with pytest.raises(TransportError):
        _copy(setup, retries=0)
    _wait_until(lambda: all(e.end is not None for e in setup.proxy.exchanges()), "the proxy to finish relaying")
    # The source now serves other bytes after the cut: only the target's check of the whole blob can see it.
    data = setup.blob_file(setup.layer)
    corrupted = bytearray(data.read_bytes())
    corrupted[-10] ^= 0xFF
    data.write_bytes(bytes(corrupted))

    with pytest.raises(IntegrityError, match=str(setup.layer.digest)):
        _copy(setup)
    assert httpx.head(f"{setup.target.url}/v2/mirror/app/blobs/{setup.layer.digest}").status_code == 404
    assert httpx.get(f"{setup.target.url}/v2/mirror/app/manifests/1.0").status_code == 404
    assert list(setup.state.glob("*.json")) == []  # the session is never continued again


def test_a_copy_cut_mid_blob_continues_its_session_within_the_run(setup: Setup) -> None:
    # The upload a push makes: a cut request is retried, the session asked how far it got, and the source opened
    # again where the session stands.
    setup.proxy.add(Fault.drop_request(after=CUT, method="PUT", path=UPLOADS))
    result = _copy(setup)
    _assert_copied(setup)
    assert len(setup.proxy.exchanges("GET", UPLOADS)) == 1  # the session's status, asked once after the cut
    sent = setup.proxy.upload_bytes(path=UPLOADS)
    assert setup.layer.size + setup.config.size <= sent <= CUT + setup.layer.size + setup.config.size
    rest = sent - CUT - setup.config.size  # what the retry sent of the layer: all the session did not hold
    assert result.bytes_copied == rest + setup.config.size
    assert result.blobs_copied == 2


def test_copy_interrupted_by_ctrl_c_resumes_in_the_next_run(setup: Setup, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "NO_PROXY": "127.0.0.1", "REGTOOL_STATE_DIR": str(setup.state)}
    args = [sys.executable, "-m", "regtool", "copy", setup.src, setup.dest, "-q", "--jobs", "1"]
    setup.proxy.throttle(1 << 20)
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until(lambda: setup.proxy.upload_bytes("PUT", UPLOADS) >= 1_000_000, "the layer upload")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "resume" in stderr.strip().splitlines()[-1]
    _wait_until(lambda: all(e.end is not None for e in setup.proxy.exchanges()), "the proxy to finish relaying")
    sent_first = setup.proxy.upload_bytes("PUT", UPLOADS)
    assert 1_000_000 <= sent_first < setup.layer.size
    # The registry finishes with the cut request on its own time: wait until its session holds what it was sent.
    _wait_until(lambda: _session_holds(setup) == sent_first, "the registry to keep the bytes it received")

    setup.proxy.throttle(None)
    setup.proxy.reset_counts()
    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0, second.stderr
    _assert_copied(setup)
    assert setup.proxy.upload_bytes(path=UPLOADS) == setup.layer.size - sent_first + setup.config.size
