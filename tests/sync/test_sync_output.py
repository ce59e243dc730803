"""What ``regtool sync`` shows: one line per image, the terminal's total bar counting images, one bar per blob
however many images move it at once, and a timeline of the run."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from regtool.cli.bars import RichProgress
from regtool.cli.progress import HumanEvents
from regtool.cli.sync import ImageLines, OneBarPerBlob, image_line
from tests.cli.support import in_process
from tests.support.images import write_image
from tests.support.serve import run_serve

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


def outcome(status: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "source": "src.example/team/app:1.0",
        "target": "dst.example/m/team/app:1.0",
        "status": status,
        "digest": OTHER,
        "source_digest": DIGEST,
        "bytes": 2048,
        "blobs_copied": 2,
        "blobs_mounted": 0,
        "blobs_skipped": 0,
        "trimmed": False,
    }
    return {**base, **fields}


def test_image_lines_say_what_happened() -> None:
    assert (
        image_line(outcome("copied")) == "copied      src.example/team/app:1.0 -> dst.example/m/team/app:1.0  2.0 KiB"
    )
    assert image_line(outcome("mounted", bytes=0, blobs_mounted=3)).endswith("0 B (3 blob(s) mounted)")
    assert image_line(outcome("skipped")).endswith("-> dst.example/m/team/app:1.0")
    trimmed = image_line(outcome("copied", trimmed=True))
    assert trimmed.endswith(f"platforms trimmed: digest {DIGEST} becomes {OTHER}")
    assert image_line(outcome("failed", error="boom")).endswith("dst.example/m/team/app:1.0: boom")


def test_the_total_bar_counts_images_and_a_shared_blob_has_one_bar() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with RichProgress(console) as bars:
        shown = HumanEvents(bars, console)
        lines = ImageLines(OneBarPerBlob(shown), bars)
        lines.event("sync-plan", images=2, repositories=2)
        # Two images copy the same base layer at once: one bar, filled once, gone after the last finish.
        lines.start(DIGEST, "blob", 100)
        lines.start(DIGEST, "blob", 100)
        lines.advance(DIGEST, 100)
        lines.advance(DIGEST, 100)
        assert bars.aggregate == (100, 100)
        lines.finish(DIGEST)
        lines.event("sync", **outcome("copied"))
        lines.finish(DIGEST)
        lines.event("sync", **outcome("skipped"))
    shown_last = console.file.getvalue().rsplit("\r", 1)[-1]  # type: ignore[attr-defined]
    assert "2/2 images" in shown_last and "blob" not in shown_last.split("2/2 images")[-1]


def test_a_timeline_records_the_sync(tmp_path: Path) -> None:
    write_image(tmp_path / "layout", "1.0", [{"a.txt": b"a"}])
    with run_serve(tmp_path / "a", enable_v1=False) as a, run_serve(tmp_path / "b", enable_v1=False) as b:
        pushed = in_process("push", f"{tmp_path / 'layout'}:1.0", f"{a.host}/team/app:1.0")
        assert pushed.returncode == 0, pushed.stderr
        proc = in_process("sync", f"{a.host}/team/app", b.host, "--timeline", str(tmp_path / "run.json"))
        assert proc.returncode == 0, proc.stderr
    document = json.loads((tmp_path / "run.json").read_text())
    assert document["title"] == f"regtool sync {a.host}/team/app {b.host}"
    calls = [(r["call"], r["fields"].get("method"), r["fields"].get("status")) for r in document["records"]]
    assert ("event", "HEAD", 404) in calls  # the destination did not have the tag yet
    assert sum(1 for r in document["records"] if r["call"] == "finish") == 2  # the config and the layer
