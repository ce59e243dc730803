"""``--timeline FILE`` (pull, push, copy) and ``demo --timeline DIR``: the waterfall drawn from the recorded events.

The SVG is parsed (xml.etree) and held against the events it was drawn from: one bar per blob or request in the
order they started, v1's layer bars one after another root first, v2's side by side, the total in the title. The
demo's v1/v2 waterfall is rendered to docs/screenshots/waterfall-v1-v2.png (the README shows it).
"""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from regtool.cli.waterfall import render_svg, render_terminal
from regtool.client import Client
from regtool.client.timeline import Timeline, TimelineRecorder
from regtool.manifest import Manifest
from regtool.reference import Reference
from tests.cli.support import assert_user_error, in_process
from tests.conftest import require_binary
from tests.support.images import write_random_image
from tests.support.serve import RunningServe, run_serve

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "screenshots" / "waterfall-v1-v2.png"
SVG = "{http://www.w3.org/2000/svg}"
LAYERS = 4


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServe, Reference, Manifest, Path]]:
    """A serve adding 20 ms per request, holding one image pushed over v1 and v2; and the image's layout."""
    work = tmp_path_factory.mktemp("cli-timeline")
    manifest = write_random_image(work / "image", "1.0", count=LAYERS, size=96 << 10)
    with run_serve(work / "registry", latency_ms=20) as server:
        ref = Reference.parse(f"{server.host}/team/app:1.0")

        async def push() -> None:
            async with Client(plain_http=True) as client:
                for protocol in ("v1", "v2"):
                    await client.push(str(work / "image:1.0"), ref, protocol=protocol)

        anyio.run(push)
        yield server, ref, manifest, work / "image"


class Bar:
    def __init__(self, element: ET.Element) -> None:
        self.kind = element.attrib["data-kind"]
        self.label = element.attrib["data-label"]
        self.start = float(element.attrib["data-start"])
        self.end = float(element.attrib["data-end"])
        self.status = element.attrib["data-status"]
        self.x = float(element.attrib["x"])
        self.width = float(element.attrib["width"])


def _panels(svg: str) -> list[tuple[str, float, list[Bar]]]:
    """Each panel of an SVG waterfall: its heading, its data-total and its bars, top to bottom."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    panels = []
    for group in root.iter(f"{SVG}g"):
        heading = group.find(f"{SVG}text")
        assert heading is not None and heading.text is not None
        bars = [Bar(rect) for rect in group.iter(f"{SVG}rect") if rect.attrib.get("class") == "bar"]
        assert [bar.start for bar in bars] == sorted(bar.start for bar in bars)
        panels.append((heading.text, float(group.attrib["data-total"]), bars))
    return panels


def _chain(server: RunningServe, ref: Reference) -> list[str]:
    top = httpx.get(f"{server.url}/v1/repositories/{ref.repository}/tags/{ref.tag}").json()
    return list(reversed(httpx.get(f"{server.url}/v1/images/{top}/ancestry").json()))


async def _record(ref: Reference, dest: Path, protocol: str) -> Timeline:
    recorder = TimelineRecorder()
    async with Client(plain_http=True, progress=recorder) as client:
        await client.pull(ref, dest, protocol=protocol)
    return recorder.timeline()


def test_the_svg_draws_the_recorded_events(
    pushed: tuple[RunningServe, Reference, Manifest, Path], tmp_path: Path
) -> None:
    server, ref, manifest, _ = pushed
    v1 = anyio.run(_record, ref, tmp_path / "v1", "v1")
    v2 = anyio.run(_record, ref, tmp_path / "v2", "v2")
    svg = render_svg([("pull", v1), ("pull", v2)])
    assert svg == render_svg([("pull", v1), ("pull", v2)])  # the same events, the same bytes
    (h1, total1, bars1), (h2, total2, bars2) = _panels(svg)
    for heading, total, bars, timeline in ((h1, total1, bars1, v1), (h2, total2, bars2, v2)):
        # One bar per row, in the rows' order, at the rows' times; the heading has the total and bytes/s.
        assert [(b.kind, b.label) for b in bars] == [(r.kind, r.label) for r in timeline.rows]
        assert [b.start for b in bars] == pytest.approx([r.start for r in timeline.rows], abs=1e-6)
        assert total == pytest.approx(timeline.total, abs=1e-6)
        assert f": {timeline.total:.2f} s, " in heading and heading.endswith("/s")
        assert heading.startswith(f"pull over {timeline.protocol}:")
    # Both panels share the time axis: the same second is as wide in each.
    scale1 = [b.width / (b.end - b.start) for b in bars1 if b.end - b.start > 0.015]
    scale2 = [b.width / (b.end - b.start) for b in bars2 if b.end - b.start > 0.015]
    assert scale1 and scale2 and max(scale1 + scale2) == pytest.approx(min(scale1 + scale2), rel=0.02)

    # v1: the layers one after another, root first (the parent chain), each after its image's JSON.
    layers1 = [b for b in bars1 if b.kind == "layer"]
    assert [b.label for b in layers1] == [f"layer {image_id[:12]}" for image_id in _chain(server, ref)]
    for before, after in itertools.pairwise(layers1):
        assert before.end <= after.start and before.x + before.width <= after.x + 0.05
    # v2: every blob of the manifest has exactly one bar, and the layers' bars overlap.
    assert manifest.config is not None
    for desc, kind in ((manifest.config, "config"), *((d, "layer") for d in manifest.layers)):
        assert [b.kind for b in bars2 if b.label == f"{kind} {desc.digest.short}"] == [kind]
    layers2 = [b for b in bars2 if b.kind == "layer"]
    assert len(layers2) == LAYERS
    assert all(a.x < b.x + b.width and b.x < a.x + a.width for a, b in itertools.combinations(layers2, 2))
    assert any(b.kind == "manifest" and b.status == "200" for b in bars2)


def test_pull_timeline_svg_and_json(pushed: tuple[RunningServe, Reference, Manifest, Path], tmp_path: Path) -> None:
    _, ref, manifest, _ = pushed
    svg_path, json_path = tmp_path / "pull.svg", tmp_path / "pull.json"
    proc = in_process("pull", str(ref), str(tmp_path / "a"), "-q", "--protocol", "v2", "--timeline", str(svg_path))
    assert proc.returncode == 0, proc.stderr
    ((heading, total, bars),) = _panels(svg_path.read_text(encoding="utf-8"))
    assert heading.startswith(f"regtool pull {ref} over v2: {total:.2f} s, ")
    assert sorted(b.label for b in bars if b.kind in ("config", "layer")) == sorted(
        f"{kind} {d.digest.short}"
        for kind, d in (("config", manifest.config), *(("layer", d) for d in manifest.layers))
        if d is not None
    )
    assert total >= max(b.end for b in bars)

    proc = in_process("pull", str(ref), str(tmp_path / "b"), "-q", "--protocol", "v1", "--timeline", str(json_path))
    assert proc.returncode == 0, proc.stderr
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["format"] == "regtool-timeline" and document["title"] == f"regtool pull {ref}"
    http = [r["fields"] for r in document["records"] if r["call"] == "event" and r["fields"]["name"] == "http"]
    assert {"/v1/_ping", f"/v1/repositories/{ref.repository}/tags/{ref.tag}"} <= {
        httpx.URL(f["url"]).path for f in http
    }
    assert all(f["status"] == 200 and f["method"] == "GET" for f in http if "/v1/" in f["url"])
    timeline = Timeline.from_json(document)
    assert len(timeline.of_kind("layer")) == LAYERS and timeline.protocol == "v1"
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed


def test_push_and_copy_timelines(pushed: tuple[RunningServe, Reference, Manifest, Path], tmp_path: Path) -> None:
    server, ref, manifest, layout = pushed
    target = f"{server.host}/team/pushed:1.0"
    proc = in_process("push", f"{layout}:1.0", target, "-q", "--timeline", str(tmp_path / "push.svg"))
    assert proc.returncode == 0, proc.stderr
    ((heading, _, bars),) = _panels((tmp_path / "push.svg").read_text(encoding="utf-8"))
    assert heading.startswith(f"regtool push {layout}:1.0 {target} over v2")
    assert sum(b.kind == "layer" for b in bars) == LAYERS and sum(b.kind == "config" for b in bars) == 1
    assert any(b.kind == "manifest" and b.label.startswith("PUT ") for b in bars)

    copied = f"{server.host}/team/copied:1.0"
    proc = in_process("copy", str(ref), copied, "-q", "--timeline", str(tmp_path / "copy.json"))
    assert proc.returncode == 0, proc.stderr
    timeline = Timeline.from_json(json.loads((tmp_path / "copy.json").read_text(encoding="utf-8")))
    assert len([r for r in timeline.of_kind("layer") if r.key in {str(d.digest) for d in manifest.layers}]) == LAYERS
    assert manifest.config is not None
    assert [r.key for r in timeline.of_kind("config")] == [str(manifest.config.digest)]
    assert timeline.of_kind("manifest")


def test_a_failed_pull_still_writes_its_timeline(
    pushed: tuple[RunningServe, Reference, Manifest, Path], tmp_path: Path
) -> None:
    _, ref, _, _ = pushed
    missing = ref.with_tag("nope")
    path = tmp_path / "failed.svg"
    proc = in_process("pull", str(missing), str(tmp_path / "out"), "-q", "--protocol", "v2", "--timeline", str(path))
    assert_user_error(proc, 3, "nope")
    ((_, _, bars),) = _panels(path.read_text(encoding="utf-8"))
    assert [(b.kind, b.status) for b in bars if b.kind == "manifest"] == [("manifest", "404")]


@pytest.mark.parametrize("name", ["timeline.png", "timeline", "no-such-dir/t.svg"])
def test_a_timeline_name_that_cannot_be_written_is_a_usage_error(
    pushed: tuple[RunningServe, Reference, Manifest, Path], tmp_path: Path, name: str
) -> None:
    server, ref, _, _ = pushed
    server.requests.take()
    proc = in_process("pull", str(ref), str(tmp_path / "out"), "-q", "--timeline", str(tmp_path / name))
    assert_user_error(proc, 2, "--timeline")
    assert server.requests.take() == [] and not (tmp_path / "out").exists()


def test_a_timeline_that_cannot_be_written_warns_and_keeps_the_exit_code(
    pushed: tuple[RunningServe, Reference, Manifest, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regtool.cli import waterfall

    def refuse(path: Path, data: bytes) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(waterfall, "write_atomic", refuse)
    _, ref, _, _ = pushed
    proc = in_process("pull", str(ref), str(tmp_path / "out"), "-q", "--timeline", str(tmp_path / "t.svg"))
    assert proc.returncode == 0
    assert proc.stderr.startswith("warning: cannot write the timeline") and "Permission denied" in proc.stderr
    proc = in_process("pull", str(ref), str(tmp_path / "out2"), "--json", "--timeline", str(tmp_path / "t.svg"))
    assert proc.returncode == 0
    events = [json.loads(line) for line in proc.stderr.splitlines()]  # stderr stays JSON lines
    assert events[-1]["event"] == "warning" and "cannot write the timeline" in events[-1]["message"]


def test_the_terminal_waterfall_fits_the_width(
    pushed: tuple[RunningServe, Reference, Manifest, Path], tmp_path: Path
) -> None:
    from rich.console import Console

    _, ref, _, _ = pushed
    v1 = anyio.run(_record, ref, tmp_path / "v1", "v1")
    v2 = anyio.run(_record, ref, tmp_path / "v2", "v2")
    console = Console(width=100, record=True, color_system=None, file=io.StringIO())
    console.print(render_terminal([("v1", v1), ("v2", v2)], width=100))
    lines = console.export_text().splitlines()
    assert all(len(line) <= 100 for line in lines)
    # A row's bar starts where its time is on the shared axis: v2's layers all start in the same few cells.
    starts = [line.index("█") for line in lines if line.startswith("layer sha256:")]
    assert len(starts) == LAYERS and max(starts) - min(starts) <= 1


def test_demo_shows_both_waterfalls_and_writes_them(tmp_path: Path) -> None:
    out = tmp_path / "timelines"
    args = ("demo", "--layers", "6", "--layer-kib", "192", "--latency", "25", "-q", "--timeline", str(out))
    proc = in_process(*args)
    assert proc.returncode == 0, proc.stderr
    assert "pull over v1 (6 x 192.0 KiB layers, 25 ms per request): " in proc.stdout
    assert "pull over v2 (" in proc.stdout and "█ manifest" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["v1-v2.svg", "v1.json", "v1.svg", "v2.json", "v2.svg"]
    (_, total1, bars1), (_, total2, bars2) = _panels((out / "v1-v2.svg").read_text(encoding="utf-8"))
    layers1 = [b for b in bars1 if b.kind == "layer"]
    layers2 = [b for b in bars2 if b.kind == "layer"]
    assert len(layers1) == len(layers2) == 6
    assert all(a.end <= b.start for a, b in itertools.pairwise(layers1))
    assert all(a.start < b.end and b.start < a.end for a, b in itertools.combinations(layers2, 2))
    assert total2 < total1

    # The screenshot the README shows, made from this run's waterfall.
    rsvg = require_binary("rsvg-convert")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([rsvg, "--background-color=white", str(out / "v1-v2.svg"), "-o", str(SCREENSHOT)], check=True)
    header = SCREENSHOT.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(header[16:20], "big") == 960 and int.from_bytes(header[20:24], "big") > 300
