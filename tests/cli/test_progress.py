"""The progress renderers: JSON lines, plain lines and rich bars, fed as the library feeds them."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

from rich.console import Console

from regtool.cli.progress import (
    HumanEvents,
    JsonLinesProgress,
    PlainProgress,
    RichProgress,
    format_bytes,
    open_progress,
)
from regtool.client.progress import NullProgress

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def _events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_format_bytes() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(32 * 1024**2) == "32.0 MiB"
    assert format_bytes(3 * 1024**4) == "3.0 TiB"
    assert format_bytes(None) == "?"


def test_json_lines_start_progress_done_and_events() -> None:
    stream = io.StringIO()
    with JsonLinesProgress(stream, interval=0.0) as progress:
        progress.start(DIGEST_A, DIGEST_A, 10)
        progress.advance(DIGEST_A, 4)
        progress.advance(DIGEST_A, 6)
        progress.finish(DIGEST_A)
        progress.start(DIGEST_B, "config", None)
        progress.finish(DIGEST_B, status="skipped")
        progress.event("retry", url="http://127.0.0.1/v2/", attempt=2)
        progress.event("summary", digest=DIGEST_A, blobs_downloaded=1)
    events = _events(stream)
    names = [e["event"] for e in events]
    assert names == ["start", "progress", "progress", "done", "start", "done", "retry", "summary"]
    assert all(isinstance(e["time"], float) for e in events)
    assert events[0] == {**events[0], "key": DIGEST_A, "total": 10}
    assert [e["bytes"] for e in events[1:3]] == [4, 10]
    assert events[3] == {**events[3], "key": DIGEST_A, "status": "done", "bytes": 10, "total": 10}
    assert events[5] == {**events[5], "key": DIGEST_B, "status": "skipped", "bytes": 0, "total": None}
    assert events[6]["attempt"] == 2
    assert events[7]["blobs_downloaded"] == 1


def test_json_lines_progress_is_throttled() -> None:
    stream = io.StringIO()
    progress = JsonLinesProgress(stream, interval=3600.0)
    progress.start(DIGEST_A, DIGEST_A, 1000)
    for _ in range(100):
        progress.advance(DIGEST_A, 10)
    progress.finish(DIGEST_A)
    events = _events(stream)
    assert [e["event"] for e in events] == ["start", "done"]
    assert events[-1]["bytes"] == 1000


def test_json_lines_from_many_threads_stay_whole_lines() -> None:
    stream = io.StringIO()
    progress = JsonLinesProgress(stream, interval=0.0)
    keys = [f"sha256:{i:064x}" for i in range(8)]

    def work(key: str) -> None:
        progress.start(key, key, 200)
        for _ in range(200):
            progress.advance(key, 1)
        progress.finish(key)

    threads = [threading.Thread(target=work, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = _events(stream)  # every line parses
    done = {e["key"]: e["bytes"] for e in events if e["event"] == "done"}
    assert done == dict.fromkeys(keys, 200)


def test_plain_progress_writes_a_line_per_finished_blob() -> None:
    stream = io.StringIO()
    with PlainProgress(stream) as progress:
        progress.start(DIGEST_A, DIGEST_A, 2 * 1024**2)
        progress.advance(DIGEST_A, 2 * 1024**2)
        progress.finish(DIGEST_A)
        progress.start(DIGEST_B, DIGEST_B, 512)
        progress.finish(DIGEST_B, status="mounted")
        progress.event("retry", attempt=1)
        progress.event("summary", anything=1)
    assert stream.getvalue().splitlines() == [
        f"   done sha256:{'a' * 12}  2.0 MiB",
        f"mounted sha256:{'b' * 12}  512 B",
        "retry: attempt=1",
    ]


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system=None), out


def test_rich_progress_aggregates_and_drops_what_was_not_transferred() -> None:
    console, out = _terminal()
    with RichProgress(console) as bars:
        assert bars.aggregate == (0.0, None)
        bars.start(DIGEST_A, DIGEST_A, 100)
        bars.start(DIGEST_B, DIGEST_B, 50)
        bars.advance(DIGEST_A, 100)
        assert bars.aggregate == (100.0, 150.0)
        bars.finish(DIGEST_A)
        bars.finish(DIGEST_B, status="skipped")  # nothing of it was transferred
        assert bars.aggregate == (100.0, 100.0)
        bars.start("config", "config", None)  # unknown size: the total grows as bytes come
        bars.advance("config", 7)
        bars.finish("config")
        assert bars.aggregate == (107.0, 107.0)
        bars.event("retry", attempt=2)
    text = out.getvalue()
    assert f"done sha256:{'a' * 12}" in text
    assert f"skipped sha256:{'b' * 12}" in text
    assert "retry: attempt=2" in text
    assert "total" in text


def test_rich_progress_ignores_unknown_keys_and_markup_in_labels() -> None:
    console, out = _terminal()
    with RichProgress(console) as bars:
        bars.advance("never-started", 5)
        bars.finish("never-started")
        bars.start("[bold]x[/]", "[bold]x[/]", 1)
        bars.advance("[bold]x[/]", 1)
        bars.finish("[bold]x[/]")
    assert "[bold]x[/]" in out.getvalue()


def test_open_progress_picks_the_renderer() -> None:
    console, _ = _terminal()
    with open_progress(json_lines=False, quiet=True, console=console) as progress:
        assert isinstance(progress, NullProgress)
    with open_progress(json_lines=True, quiet=False, console=console) as progress:
        assert isinstance(progress, JsonLinesProgress)
    with open_progress(json_lines=False, quiet=False, console=console) as progress:
        assert isinstance(progress, HumanEvents) and isinstance(progress.inner, RichProgress)
    pipe = Console(file=io.StringIO())
    with open_progress(json_lines=False, quiet=False, console=pipe) as progress:
        assert isinstance(progress, HumanEvents) and isinstance(progress.inner, PlainProgress)


def test_human_output_words_a_retry_and_keeps_event_lines_for_vv() -> None:
    stream = io.StringIO()
    pipe = Console(file=stream)
    with open_progress(json_lines=False, quiet=False, console=pipe) as progress:
        progress.event("resume", key=DIGEST_A, offset=5, size=10)
        progress.event(
            "retry", what="PATCH http://h/v2/a/blobs/uploads/x", attempt=1, delay=0.2, reason="connection reset", of=4
        )
    assert stream.getvalue() == (
        "warning: retrying PATCH http://h/v2/a/blobs/uploads/x (connection reset), attempt 2 of 4\n"
    )
    stream = io.StringIO()
    with open_progress(json_lines=False, quiet=False, console=Console(file=stream), verbose=2) as progress:
        progress.event("resume", key=DIGEST_A, offset=5, size=10)
    assert stream.getvalue() == f"resume: key={DIGEST_A} offset=5 size=10\n"
