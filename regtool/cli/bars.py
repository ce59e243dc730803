"""The progress bars of a terminal: :class:`RichProgress`, which :func:`regtool.cli.progress.open_progress` picks when
stderr is a TTY. Its own module because rich.progress (tables, live display) is a noticeable import that the other
renderers, ``--quiet`` and ``--json`` do not need.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    DownloadColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as _RichBars
from rich.table import Table
from rich.text import Text

from regtool.cli.progress import Transfer, event_text, transfer_label
from regtool.cli.units import format_bytes

__all__ = ["RichProgress"]


class _SpeedColumn(ProgressColumn):
    """Bytes per second in binary units, like the sizes beside it."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{format_bytes(int(speed))}/s", style="progress.data.speed")


class _FittingBars(_RichBars):
    """rich's Progress, each line kept within the console's width by dropping columns rather than wrapping.

    rich squeezes a grid wider than the terminal by wrapping and cutting cells, which garbles the byte counts on a
    narrow terminal. Here the widest set of columns whose lines fit is used: all of them, then without the bar,
    then without the speed, then without the ETA; in the last resort the label is shortened with an ellipsis. The
    columns are the constructor's, in the order description, bar, sizes, speed, ETA.
    """

    def __init__(self, *columns: ProgressColumn, **kwargs: Any) -> None:
        label, bar, sizes, speed, eta = columns
        self._levels: list[tuple[ProgressColumn, ...]] = [
            (label, bar, sizes, speed, eta),
            (label, sizes, speed, eta),
            (label, sizes, eta),
            (label, sizes),
        ]
        super().__init__(*columns, **kwargs)

    def make_tasks_table(self, tasks: Iterable[Task]) -> Table:
        visible = [task for task in tasks if task.visible]
        if not visible:  # also while rich's constructor makes its first, empty, display
            return Table.grid()
        width = self.console.width
        for columns in self._levels:
            rows = [[column(task) for column in columns] for task in visible]
            widths = [max((self._width(row[i]) for row in rows), default=0) for i in range(len(columns))]
            # The grid puts one space between columns.
            room = width - sum(widths[1:]) - (len(columns) - 1)
            if widths[0] <= room:
                return _grid(columns, rows, label_width=None)
        return _grid(columns, rows, label_width=max(1, room))

    def _width(self, cell: RenderableType) -> int:
        return Measurement.get(self.console, self.console.options, cell).maximum


def _grid(columns: Sequence[ProgressColumn], rows: list[list[RenderableType]], *, label_width: int | None) -> Table:
    """The grid rich's Progress would make, with no cell wrapping; a label longer than ``label_width`` is elided."""
    table_columns = [column.get_table_column().copy() for column in columns]
    for table_column in table_columns:
        table_column.no_wrap = True
    table_columns[0].overflow = "ellipsis"
    table_columns[0].max_width = label_width
    table = Table.grid(*table_columns, padding=(0, 1))
    for row in rows:
        table.add_row(*row)
    return table


class RichProgress:
    """Bars on a terminal: one per blob while it transfers, and a ``total`` bar with speed and ETA."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._bars = _FittingBars(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=30),
            DownloadColumn(binary_units=True),
            _SpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            refresh_per_second=8,
        )
        self._lock = threading.Lock()
        self._transfers: dict[str, Transfer] = {}
        self._total: TaskID | None = None
        self._expected = 0

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    @property
    def aggregate(self) -> tuple[float, float | None]:
        """Bytes transferred and bytes expected so far, over all blobs (the ``total`` bar)."""
        with self._lock:
            if self._total is None:
                return 0.0, None
            task = next(t for t in self._bars.tasks if t.id == self._total)
            return task.completed, task.total

    def _aggregate(self) -> TaskID:
        if self._total is None:
            self._total = self._bars.add_task("[bold]total[/]", total=0)
        return self._total

    def label_total(self, text: str) -> None:
        """Name the ``total`` bar ``text`` (a sync counts its images there: ``12/30 images``)."""
        with self._lock:
            self._bars.update(self._aggregate(), description=f"[bold]{escape(text)}[/]")

    def start(self, key: str, description: str, total: int | None) -> None:
        with self._lock:
            aggregate = self._aggregate()
            transfer = Transfer(transfer_label(key, description), total)
            transfer.task = self._bars.add_task(escape(transfer.label), total=total)
            self._transfers[key] = transfer
            self._expected += total or 0
            self._bars.update(aggregate, total=self._expected)

    def advance(self, key: str, nbytes: int) -> None:
        with self._lock:
            transfer = self._transfers.get(key)
            if transfer is None or transfer.task is None:
                return
            transfer.done += nbytes
            self._bars.advance(transfer.task, nbytes)
            if transfer.total is None:
                self._expected += nbytes
                self._bars.update(self._aggregate(), total=self._expected)
            self._bars.advance(self._aggregate(), nbytes)

    def finish(self, key: str, *, status: str = "done") -> None:
        with self._lock:
            transfer = self._transfers.pop(key, None)
            if transfer is None or transfer.task is None:
                return
            # What was not transferred (skipped, mounted, resumed, failed) leaves the aggregate's total.
            if transfer.total is not None and transfer.done < transfer.total:
                self._expected -= transfer.total - transfer.done
                self._bars.update(self._aggregate(), total=self._expected)
            self._bars.remove_task(transfer.task)
            size = format_bytes(transfer.total if transfer.total is not None else transfer.done)
            style = {"done": "green", "failed": "red"}.get(status, "cyan")
            self._bars.console.print(f"[{style}]{status:>7}[/] {escape(transfer.label)}  {size}")

    def event(self, name: str, **fields: Any) -> None:
        if name in ("summary", "progress"):
            return
        self._bars.console.print(f"[yellow]{escape(event_text(name, fields))}[/]")
