"""Waterfalls of a recorded run (``regtool.client.timeline``): an SVG file, the raw events as JSON, and bars in the
terminal for ``regtool demo``.

One row per blob transfer or request, in the order they started; a bar runs from the first byte asked for to the
last byte verified (a request: sent to answered), coloured by kind. Several panels (the demo's v1 and v2 pulls)
share one time axis, so the same second is the same width in each. The SVG is plain text written here, the same
bytes for the same events, with every label escaped.

Loaded only when ``--timeline`` is given, or by the demo.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from regtool.cli.console import handle_errors, stderr, warn
from regtool.cli.units import format_bytes
from regtool.client.progress import Progress
from regtool.client.timeline import KINDS, Row, Timeline, TimelineRecorder
from regtool.errors import UsageError
from regtool.files import write_atomic

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

__all__ = [
    "COLOURS",
    "check_timeline_dir",
    "check_timeline_path",
    "heading",
    "recording",
    "render_svg",
    "render_terminal",
    "show_waterfalls",
    "timeline_json",
    "write_timeline",
]

# One colour per kind (KINDS order), told apart also by most colour-blind readers.
COLOURS = {
    "manifest": "#4c78a8",
    "config": "#f58518",
    "layer": "#54a24b",
    "auth": "#b279a2",
    "retry": "#e45756",
    "other": "#9d9da0",
}
_FAILED = "#d62728"

# SVG geometry, in pixels.
_WIDTH = 960
_PAD = 12
_LABEL_WIDTH = 250
_AXIS_RIGHT = 30
_ROW = 16
_BAR = 10
_HEADING = 22
_AXIS = 26
_GAP = 14
_MIN_BAR = 1.5
_LABEL_CHARS = 38

_EIGHTHS = ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")


def heading(title: str, timeline: Timeline) -> str:
    """A panel's title: what ran, its total seconds and its bytes per second."""
    name = title
    if timeline.protocol and timeline.protocol not in title.split():
        name = f"{title} over {timeline.protocol}"
    return f"{name}: {timeline.total:.2f} s, {format_bytes(timeline.nbytes)} at {format_bytes(round(timeline.rate))}/s"


def _ticks(axis: float) -> tuple[float, int]:
    """A tick step of 1, 2 or 5 times a power of ten giving at most 8 intervals, and the decimals to show."""
    if axis <= 0:
        return 1.0, 0
    exponent = math.floor(math.log10(axis / 8))
    for factor in (1, 2, 5, 10):
        step = factor * 10.0**exponent
        if axis / step <= 8:
            break
    return step, max(0, -math.floor(math.log10(step) + 1e-9))


def _axis_of(panels: Sequence[tuple[str, Timeline]], axis: float | None) -> float:
    if axis is not None and axis > 0:
        return axis
    return max([timeline.total for _, timeline in panels] + [1e-3])


def _cut(text: str, limit: int) -> str:
    # The middle goes: a path's start (the API) and its end (json, layer, the tag) tell rows apart.
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def _num(value: float) -> str:
    return f"{value:.1f}"


def _row_text(row: Row) -> str:
    parts = [f"{row.label}: {row.start:.3f}-{row.end:.3f} s ({row.seconds * 1000:.0f} ms)"]
    if row.status:
        parts.append(row.status)
    if row.nbytes:
        parts.append(format_bytes(row.nbytes))
    if row.requests:
        parts.append(f"{row.requests} request{'s' if row.requests > 1 else ''}")
    return ", ".join(parts)


def render_svg(panels: Sequence[tuple[str, Timeline]], *, axis: float | None = None) -> str:
    """An SVG document with one waterfall panel per ``(title, timeline)``, all on one time axis (``axis`` seconds
    wide, default: the longest total)."""
    span = _axis_of(panels, axis)
    left = _PAD + _LABEL_WIDTH
    area = _WIDTH - left - _AXIS_RIGHT
    step, decimals = _ticks(span)
    ticks = [i * step for i in range(int(span / step + 1e-9) + 1)]

    def x_of(seconds: float) -> float:
        return left + seconds / span * area

    body: list[str] = []
    y = _PAD
    # The legend: one swatch per kind.
    x = float(left)
    for kind in KINDS:
        body.append(f'<rect x="{_num(x)}" y="{y + 2}" width="10" height="10" fill="{COLOURS[kind]}"/>')
        body.append(f'<text x="{_num(x + 14)}" y="{y + 11}" class="legend">{kind}</text>')
        x += 14 + 7.2 * len(kind) + 16
    y += 20
    headings: list[str] = []
    for index, (title, timeline) in enumerate(panels):
        text = heading(title, timeline)
        headings.append(text)
        body.append(f'<g class="panel" data-index="{index}" data-total="{timeline.total:.6f}">')
        body.append(f'<text x="{_PAD}" y="{y + 15}" class="heading">{html.escape(text)}</text>')
        y += _HEADING
        top = y
        rows_height = len(timeline.rows) * _ROW
        for tick in ticks:
            gx = _num(x_of(tick))
            body.append(f'<line x1="{gx}" y1="{top}" x2="{gx}" y2="{top + rows_height + 4}" class="grid"/>')
        for number, row in enumerate(timeline.rows):
            ry = top + number * _ROW
            if number % 2 == 0:
                body.append(f'<rect x="{_PAD}" y="{ry}" width="{_WIDTH - 2 * _PAD}" height="{_ROW}" class="stripe"/>')
            body.append(
                f'<text x="{_PAD}" y="{ry + 12}" class="label">{html.escape(_cut(row.label, _LABEL_CHARS))}</text>'
            )
            bx = x_of(row.start)
            width = max(_MIN_BAR, row.seconds / span * area)
            extra = ""
            if row.status in ("failed", "unfinished") or row.status.startswith(("4", "5")):
                extra = f' stroke="{_FAILED}" stroke-width="1.5"'
            elif row.status in ("skipped", "mounted"):
                extra = ' fill-opacity="0.35"'
            body.append(
                f'<rect class="bar" x="{_num(bx)}" y="{ry + (_ROW - _BAR) // 2}" width="{_num(width)}" '
                f'height="{_BAR}" fill="{COLOURS.get(row.kind, COLOURS["other"])}"{extra} '
                f'data-kind="{row.kind}" data-label="{html.escape(row.label)}" data-start="{row.start:.6f}" '
                f'data-end="{row.end:.6f}" data-status="{html.escape(row.status)}">'
                f"<title>{html.escape(_row_text(row))}</title></rect>"
            )
        y = top + rows_height + 4
        body.append(f'<line x1="{left}" y1="{y}" x2="{left + area}" y2="{y}" class="axis"/>')
        for tick in ticks:
            tx = _num(x_of(tick))
            body.append(f'<line x1="{tx}" y1="{y}" x2="{tx}" y2="{y + 4}" class="axis"/>')
            body.append(f'<text x="{tx}" y="{y + 16}" class="tick">{tick:.{decimals}f} s</text>')
        body.append("</g>")
        y += _AXIS + _GAP
    height = y - _GAP + _PAD
    document_title = html.escape(" | ".join(headings))
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
            f'viewBox="0 0 {_WIDTH} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace">',
            f"<title>{document_title}</title>",
            "<style>"
            ".heading{font-size:13px;font-weight:bold;fill:#222}"
            ".label,.legend{font-size:11px;fill:#333}"
            ".tick{font-size:10px;fill:#555;text-anchor:middle}"
            ".stripe{fill:#f4f4f6}.grid{stroke:#dddde3;stroke-width:1}.axis{stroke:#777;stroke-width:1}"
            "</style>",
            f'<rect width="{_WIDTH}" height="{height}" fill="#ffffff"/>',
            *body,
            "</svg>",
            "",
        ]
    )


def render_terminal(panels: Sequence[tuple[str, Timeline]], *, width: int, axis: float | None = None) -> Text:
    """The panels as rich text ``width`` cells wide: a label column, then bars of block characters (eighths at
    the end) on one time axis, a tick line, and a legend."""
    from rich.text import Text

    span = _axis_of(panels, axis)
    longest = max([len(row.label) for _, timeline in panels for row in timeline.rows] + [8])
    label_width = min(34, longest)
    cells = max(10, width - label_width - 1)
    step, decimals = _ticks(span)
    text = Text()
    for title, timeline in panels:
        text.append(heading(title, timeline) + "\n", style="bold")
        for row in timeline.rows:
            text.append(_cut(row.label, label_width).ljust(label_width) + " ")
            begin = min(cells - 1, int(row.start / span * cells))
            eighths = max(1, round((row.end / span * cells - begin) * 8))
            eighths = min(eighths, (cells - begin) * 8)
            bar = "█" * (eighths // 8) + _EIGHTHS[eighths % 8]
            style = COLOURS.get(row.kind, COLOURS["other"])
            if row.status in ("failed", "unfinished"):
                style += " underline"
            text.append(" " * begin)
            text.append(bar, style=style)
            text.append("\n")
        # The axis: a tick mark per step and its label under it, where it fits.
        marks = ["─"] * cells
        labels = [" "] * (cells + 8)
        tick = 0.0
        while tick <= span + 1e-9:
            at = min(cells - 1, int(tick / span * cells))
            marks[at] = "┬"
            label = f"{tick:.{decimals}f}s"
            fits = at + len(label) <= cells
            if fits and all(c == " " for c in labels[max(0, at - 1) : at + len(label) + 1]):
                labels[at : at + len(label)] = list(label)
            tick += step
        text.append(" " * (label_width + 1) + "".join(marks) + "\n", style="dim")
        text.append(" " * (label_width + 1) + "".join(labels[:cells]).rstrip() + "\n", style="dim")
    text.append(" " * (label_width + 1))
    for kind in KINDS:
        text.append("█ ", style=COLOURS[kind])
        text.append(kind + "  ")
    return text


def check_timeline_path(path: Path) -> str:
    """``svg`` or ``json`` from the file name; UsageError for anything else or a place it cannot go."""
    suffix = path.suffix.lower()
    if suffix not in (".svg", ".json"):
        raise UsageError(
            f"--timeline {path}: name a .svg file (the waterfall) or a .json file (the raw events), "
            f"not {suffix or 'a name without an extension'}"
        )
    if path.is_dir():
        raise UsageError(f"--timeline {path}: is a directory; name a .svg or .json file")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"--timeline {path}: no such directory: {parent}")
    return suffix[1:]


def timeline_json(recorder: TimelineRecorder, *, title: str) -> str:
    """The raw records as a JSON document, one record per line."""
    document = recorder.to_json()
    records = document.pop("records")
    head = json.dumps({**document, "title": title}, default=str)[:-1]
    lines = [json.dumps(record, default=str, separators=(",", ":")) for record in records]
    return head + ', "records": [\n' + ",\n".join(lines) + "\n]}\n"


def write_timeline(
    path: Path, recorder: TimelineRecorder, *, title: str, axis: float | None = None, timeline: Timeline | None = None
) -> None:
    """``path`` (``.svg`` or ``.json``) from what ``recorder`` holds, atomically."""
    if check_timeline_path(path) == "svg":
        text = render_svg([(title, timeline or recorder.timeline())], axis=axis)
    else:
        text = timeline_json(recorder, title=title)
    write_atomic(path, text.encode())


@contextmanager
def recording(path: Path, progress: Progress, *, title: str, json_lines: bool = False) -> Iterator[Progress]:
    """A :class:`TimelineRecorder` around ``progress`` for the command's run; ``path`` is written when the block
    ends, whether the command succeeded or failed (a failed transfer is worth seeing). A bad ``path`` is a usage
    error before anything runs; a timeline that cannot be written is a warning, never the command's failure."""
    with handle_errors(json_lines=json_lines):
        check_timeline_path(path)
    recorder = TimelineRecorder(progress)
    try:
        yield recorder
    finally:
        try:
            write_timeline(path, recorder, title=title)
        except OSError as exc:
            message = f"cannot write the timeline {path}: {exc.strerror or exc}"
            if json_lines:
                # The command's run() has ended, so warn() no longer knows stderr carries JSON lines.
                stderr.file.write(json.dumps({"event": "warning", "message": message}) + "\n")
                stderr.file.flush()
            else:
                warn(message)


def check_timeline_dir(directory: Path) -> None:
    """``demo --timeline DIR``: a directory, or a name one can be made at; UsageError otherwise."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--timeline {directory}: not a directory")


def show_waterfalls(
    console: Console, recorders: Mapping[str, TimelineRecorder], *, detail: str, directory: Path | None = None
) -> list[Path]:
    """The demo's end: each recorded pull (``{protocol: recorder}``, of the image ``detail`` describes) as a
    waterfall on ``console``, all on one time axis; with ``directory``, also ``<protocol>.svg``,
    ``<protocol>.json`` and the panels together in ``<a>-<b>.svg``. Returns the files written."""
    panels = [(f"pull over {protocol} ({detail})", recorder.timeline()) for protocol, recorder in recorders.items()]
    axis = _axis_of(panels, None)
    console.print(render_terminal(panels, width=console.width, axis=axis))
    if directory is None:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for (name, timeline), (protocol, recorder) in zip(panels, recorders.items(), strict=True):
        svg, raw = directory / f"{protocol}.svg", directory / f"{protocol}.json"
        write_atomic(svg, render_svg([(name, timeline)], axis=axis).encode())
        write_atomic(raw, timeline_json(recorder, title=name).encode())
        written += [svg, raw]
    together = directory / ("-".join(recorders) + ".svg")
    write_atomic(together, render_svg(panels, axis=axis).encode())
    written.append(together)
    return written
