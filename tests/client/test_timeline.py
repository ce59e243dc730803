"""Timelines from the library's own events: a real regtool serve, pulls over v1 and v2 with a TimelineRecorder.

v1 walks the parent chain, so its layer bars follow one another root first; v2 reads every blob from the manifest
and its layer bars overlap. Every blob has exactly one row, and every API request is an ``http`` event.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regtool.client import Client
from regtool.client.progress import NullProgress
from regtool.client.timeline import Record, Row, Timeline, TimelineRecorder
from regtool.manifest import Manifest
from regtool.reference import Reference
from tests.support.images import write_random_image
from tests.support.serve import RunningServe, run_serve

pytestmark = pytest.mark.anyio

LAYERS = 4


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServe, Reference, Manifest]]:
    """A serve with 20 ms per request (so serial and concurrent differ clearly) holding one image over v1 and v2."""
    import anyio

    work = tmp_path_factory.mktemp("timeline")
    manifest = write_random_image(work / "image", "1.0", count=LAYERS, size=96 << 10)
    with run_serve(work / "registry", latency_ms=20) as server:
        ref = Reference.parse(f"{server.host}/team/app:1.0")

        async def push() -> None:
            async with Client(plain_http=True) as client:
                for protocol in ("v1", "v2"):
                    await client.push(str(work / "image:1.0"), ref, protocol=protocol)

        anyio.run(push)
        yield server, ref, manifest


async def _pull(ref: Reference, dest: Path, protocol: str) -> TimelineRecorder:
    recorder = TimelineRecorder(NullProgress())
    async with Client(plain_http=True, progress=recorder) as client:
        await client.pull(ref, dest, protocol=protocol)
    return recorder


def _overlap(a: Row, b: Row) -> bool:
    return a.start < b.end and b.start < a.end


def _v1_chain(server: RunningServe, ref: Reference) -> list[str]:
    """The image ids of ``ref`` root first, as the registry's /ancestry lists them (top first)."""
    top = httpx.get(f"{server.url}/v1/repositories/{ref.repository}/tags/{ref.tag}").json()
    ancestry = httpx.get(f"{server.url}/v1/images/{top}/ancestry").json()
    return list(reversed(ancestry))


async def test_v1_layers_come_one_after_another_root_first(
    pushed: tuple[RunningServe, Reference, Manifest], tmp_path: Path
) -> None:
    server, ref, _ = pushed
    recorder = await _pull(ref, tmp_path / "v1", "v1")
    timeline = recorder.timeline()
    layers = timeline.of_kind("layer")
    chain = _v1_chain(server, ref)
    assert [row.key for row in layers] == [f"v1:{image_id}" for image_id in chain]
    for before, after in itertools.pairwise(layers):
        assert before.end <= after.start, (before, after)
    assert all(row.status == "done" and row.requests == 1 for row in layers)  # its GET .../layer, folded in
    # Each image's JSON is fetched before its layer: the parent chain's order.
    jsons = timeline.of_kind("config")
    assert [row.label.split("/")[3] for row in jsons] == [image_id[:12] for image_id in chain]
    assert timeline.protocol == "v1"


async def test_v2_blobs_overlap_and_each_blob_has_one_row(
    pushed: tuple[RunningServe, Reference, Manifest], tmp_path: Path
) -> None:
    _, ref, manifest = pushed
    recorder = await _pull(ref, tmp_path / "v2", "v2")
    timeline = recorder.timeline()
    assert manifest.config is not None
    blobs = {str(manifest.config.digest): "config", **{str(d.digest): "layer" for d in manifest.layers}}
    transfer_rows = [row for row in timeline.rows if row.key in blobs]
    assert sorted(row.key or "" for row in transfer_rows) == sorted(blobs)
    assert all(blobs[row.key or ""] == row.kind for row in transfer_rows)
    layers = timeline.of_kind("layer")
    assert len(layers) == LAYERS
    assert sum(_overlap(a, b) for i, a in enumerate(layers) for b in layers[i + 1 :]) >= LAYERS - 1
    assert timeline.nbytes == sum(d.size for d in (manifest.config, *manifest.layers))
    manifests = timeline.of_kind("manifest")
    assert [row.status for row in manifests] == ["200"]
    assert timeline.total >= max(row.end for row in timeline.rows)
    assert timeline.protocol == "v2"


async def test_every_api_request_is_an_http_event_with_its_status(
    pushed: tuple[RunningServe, Reference, Manifest], tmp_path: Path
) -> None:
    server, ref, _ = pushed
    server.requests.take()
    recorder = await _pull(ref, tmp_path / "v1", "v1")
    served = server.requests.take()
    http = [r.fields for r in recorder.records if r.call == "event" and r.fields["name"] == "http"]
    # v1 moves everything over httpx: the client saw exactly the requests the server answered.
    assert sorted((f["method"], httpx.URL(f["url"]).path, f["status"]) for f in http) == sorted(
        (e.method, e.path, e.status) for e in served
    )
    assert all(f["seconds"] >= 0.02 for f in http)  # the server's added latency is inside each


async def test_the_json_document_gives_back_the_same_rows(
    pushed: tuple[RunningServe, Reference, Manifest], tmp_path: Path
) -> None:
    _, ref, _ = pushed
    recorder = await _pull(ref, tmp_path / "v2", "v2")
    document = recorder.to_json()
    again = Timeline.from_json(document)
    rows = Timeline.from_records(recorder.records).rows
    # Times are kept to the microsecond in the document.
    assert [(r.label, r.kind, r.status, r.nbytes, r.requests) for r in again.rows] == [
        (r.label, r.kind, r.status, r.nbytes, r.requests) for r in rows
    ]
    assert [r.start for r in again.rows] == pytest.approx([r.start for r in rows], abs=2e-6)
    assert again.total == pytest.approx(recorder.records[-1].t, abs=2e-6)


async def test_a_token_request_is_an_auth_row(tmp_path: Path) -> None:
    from tests.auth.support import write_htpasswd

    write_random_image(tmp_path / "image", "1.0", count=2, size=4096)
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "s3cret"})
    with run_serve(tmp_path / "registry", htpasswd=htpasswd, token_auth=True, anonymous_pull=True) as server:
        ref = Reference.parse(f"{server.host}/team/app:1.0")
        async with Client(plain_http=True, username="alice", password="s3cret") as client:
            await client.push(str(tmp_path / "image:1.0"), ref, protocol="v2")
        recorder = await _pull(ref, tmp_path / "out", "v2")
    timeline = recorder.timeline()
    auth = timeline.of_kind("auth")
    assert auth and all(row.label.startswith("GET /token") and row.status == "200" for row in auth)
    refused = [row for row in timeline.rows if row.status == "401"]
    assert refused and refused[0].end <= auth[0].start + 0.005  # the 401 challenge comes first


# -- rows from records, without a registry --------------------------------------------------------------


def _event(t: float, name: str, **fields: object) -> Record:
    return Record(t, "event", None, {"name": name, **fields})


def test_rows_from_synthetic_records() -> None:
    config = "sha256:" + "c" * 64
    layer = "sha256:" + "a" * 64
    records = [
        _event(0.10, "http", method="GET", url="http://r/v2/", status=200, seconds=0.05),
        _event(
            0.30,
            "http",
            method="GET",
            url="http://r/v2/x/manifests/1",
            status=401,
            seconds=0.05,
            realm="http://r/token",
        ),
        _event(0.35, "http", method="GET", url="http://r/token?scope=repository%3Ax%3Apull", status=200, seconds=0.04),
        _event(0.40, "image", digest="sha256:" + "d" * 64, config=config, layers=[layer]),
        Record(0.41, "start", config, {"description": config[:19], "total": 10}),
        Record(0.42, "start", layer, {"description": layer[:19], "total": 20}),
        Record(0.43, "advance", config, {"bytes": 10}),
        _event(0.44, "http", method="HEAD", url=f"http://r/v2/x/blobs/{layer}", status=200, seconds=0.01),
        _event(0.45, "retry", what="GET of blob", delay=0.25, reason="HTTP 503", attempt=1),
        Record(0.46, "finish", config, {"status": "done"}),
        Record(0.80, "advance", layer, {"bytes": 20}),
        Record(0.90, "finish", layer, {"status": "failed"}),
    ]
    timeline = Timeline.from_records(records)
    kinds = [(row.kind, row.label) for row in timeline.rows]
    assert kinds == [
        ("other", "GET /v2/"),
        ("manifest", "GET /v2/x/manifests/1"),
        ("auth", "GET /token"),
        ("config", "config sha256:cccccccccccc"),
        ("layer", "layer sha256:aaaaaaaaaaaa"),
        ("retry", "retry GET of blob"),
    ]
    layer_row = timeline.rows[4]
    assert (layer_row.start, layer_row.end, layer_row.status, layer_row.requests) == (0.42, 0.90, "failed", 1)
    assert timeline.rows[5].end == pytest.approx(0.70)
    assert timeline.nbytes == 30 and timeline.total == 0.90
    assert timeline.rate == pytest.approx(30 / 0.90)


def test_the_recorder_forwards_and_is_thread_safe() -> None:
    seen: list[str] = []

    class Inner(NullProgress):
        def advance(self, key: str, nbytes: int) -> None:
            seen.append(key)

    recorder = TimelineRecorder(Inner())
    recorder.start("k", "blob", 4000)

    def work() -> None:
        for _ in range(1000):
            recorder.advance("k", 1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.finish("k")
    records = recorder.records
    assert len(seen) == 4000 and len(records) == 4002
    assert [r.t for r in records] == sorted(r.t for r in records)
    (row,) = recorder.timeline().rows
    assert row.nbytes == 4000 and row.status == "done"
