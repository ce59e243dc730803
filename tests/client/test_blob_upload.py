"""The one v2 blob upload (``client/v2/upload.py``) that push and copy share, against a real regtool serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from regtool.client import Client
from regtool.errors import IntegrityError
from regtool.reference import Reference
from tests.support.images import write_random_image
from tests.support.serve import RunningServe, serve  # noqa: F401

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("chunk_size", [None, 64 << 10])
async def test_a_corrupt_source_blob_cancels_its_session_and_leaves_no_state(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunk_size: int | None,
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("REGTOOL_STATE_DIR", str(state))
    manifest = write_random_image(tmp_path / "src", "1", count=1, size=256 << 10)
    layer = manifest.layers[0]
    blob = tmp_path / "src" / "blobs" / "sha256" / layer.digest.encoded
    data = bytearray(blob.read_bytes())
    data[-100] ^= 0xFF
    blob.write_bytes(bytes(data))

    async with Client(jobs=1) as client:
        with pytest.raises(IntegrityError, match=str(layer.digest)):
            await client.push(
                f"{tmp_path / 'src'}:1", Reference.parse(f"{serve.host}/team/bad:1"), chunk_size=chunk_size
            )

    # The session opened for the bad blob is cancelled at the registry, and nothing is kept to continue it (the
    # config's upload, cut short beside it, keeps its state for a rerun).
    opened = [e for e in serve.requests.events("POST", "/v2/team/bad/blobs/uploads/") if e.status == 202]
    cancelled = [e for e in serve.requests.events("DELETE", "/v2/team/bad/blobs/uploads/") if e.status == 204]
    assert len(cancelled) == 1
    assert len(opened) >= 1
    assert not [p for p in state.glob("*.json") if str(layer.digest) in p.read_text()]
    assert not serve.requests.events("PUT", "/manifests/")
