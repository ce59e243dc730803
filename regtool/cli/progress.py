"""Progress renderers: implementations of :class:`regtool.client.progress.Progress` for the terminal.

- :class:`RichProgress` (stderr is a TTY): one bar per blob plus an aggregate bar with bytes/s and ETA.
- :class:`PlainProgress` (stderr is a file or pipe): one line per finished blob, no bars.
- :class:`JsonLinesProgress` (``--json``): one JSON object per line on stderr: ``start``, throttled ``progress``
  and ``done`` for each blob, other library events as they come, and a final ``summary``.
- ``--quiet``: :class:`regtool.client.progress.NullProgress`.

The library's own events (``retry``, ``resume``, ``chain``, ...) are ``key=value`` lines meant for machines and
debugging: they are JSON lines under ``--json`` and shown as such on a terminal or in a log only at ``-vv``. At
normal verbosity a retry is one plain warning line instead (``warning: retrying PATCH … (connection reset),
attempt 2 of 4``), and the other events are not shown.

The library may call these from worker threads (blobs are hashed and written off the event loop), so each
renderer guards its own state with a lock. Pick one with :func:`open_progress`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from regtool.cli.console import real_console
from regtool.cli.units import format_bytes
from regtool.client.progress import NullProgress, Progress

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

    from regtool.cli.bars import RichProgress

__all__ = [
    "HumanEvents",
    "JsonLinesProgress",
    "PlainProgress",
    "RichProgress",
    "Transfer",
    "event_text",
    "format_bytes",
    "open_progress",
    "retry_text",
    "transfer_label",
]

# One "progress" JSON line per blob at most this often (seconds); start and done are always written.
JSON_PROGRESS_INTERVAL = 0.5


def transfer_label(key: str, description: str) -> str:
    """How a transfer is named on a line or a bar: its description, a digest shortened."""
    # Digests are long: show the algorithm and 12 hex digits, as docker does.
    text = description or key
    algorithm, sep, encoded = text.partition(":")
    if sep and len(encoded) > 12 and algorithm.isalnum():
        return f"{algorithm}:{encoded[:12]}"
    return text


def event_text(name: str, fields: dict[str, Any]) -> str:
    """An event as one human line: its name and its fields as key=value."""
    details = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"{name}: {details}" if details else name


@dataclass
class Transfer:
    """One blob on its way, as the human renderers count it."""

    label: str
    total: int | None
    done: int = 0
    task: TaskID | None = None


class PlainProgress:
    """A line per finished blob and per library event, for logs (stderr not a terminal)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._transfers: dict[str, Transfer] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.flush()

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def start(self, key: str, description: str, total: int | None) -> None:
        with self._lock:
            self._transfers[key] = Transfer(transfer_label(key, description), total)

    def advance(self, key: str, nbytes: int) -> None:
        with self._lock:
            transfer = self._transfers.get(key)
            if transfer is not None:
                transfer.done += nbytes

    def finish(self, key: str, *, status: str = "done") -> None:
        with self._lock:
            transfer = self._transfers.pop(key, None)
            if transfer is None:
                return
            size = transfer.total if transfer.total is not None else transfer.done
            self._write(f"{status:>7} {transfer.label}  {format_bytes(size)}")

    def event(self, name: str, **fields: Any) -> None:
        if name in ("summary", "progress"):
            return
        with self._lock:
            self._write(event_text(name, fields))


class JsonLinesProgress:
    """JSON lines for CI: ``{"event": "start"|"progress"|"done"|<library event>|"summary", ...}``.

    Every line has ``event`` and ``time`` (seconds since the epoch); blob lines have ``key`` (the digest).
    """

    def __init__(self, stream: IO[str], *, interval: float = JSON_PROGRESS_INTERVAL) -> None:
        self._stream = stream
        self._interval = interval
        self._lock = threading.Lock()
        self._transfers: dict[str, Transfer] = {}
        self._last: dict[str, float] = {}

    def __enter__(self) -> JsonLinesProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.flush()

    def _write(self, event: str, fields: dict[str, Any]) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self._stream.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
        self._stream.flush()

    def start(self, key: str, description: str, total: int | None) -> None:
        with self._lock:
            self._transfers[key] = Transfer(description, total)
            self._last[key] = time.monotonic()
            self._write("start", {"key": key, "description": description, "total": total})

    def advance(self, key: str, nbytes: int) -> None:
        with self._lock:
            transfer = self._transfers.get(key)
            if transfer is None:
                return
            transfer.done += nbytes
            now = time.monotonic()
            if now - self._last.get(key, 0.0) >= self._interval:
                self._last[key] = now
                self._write("progress", {"key": key, "bytes": transfer.done, "total": transfer.total})

    def finish(self, key: str, *, status: str = "done") -> None:
        with self._lock:
            transfer = self._transfers.pop(key, None)
            self._last.pop(key, None)
            done = transfer.done if transfer is not None else 0
            total = transfer.total if transfer is not None else None
            self._write("done", {"key": key, "status": status, "bytes": done, "total": total})

    def event(self, name: str, **fields: Any) -> None:
        with self._lock:
            self._write(name, fields)


def retry_text(fields: dict[str, Any]) -> str:
    """The human line of a ``retry`` event: what is retried, why, and which attempt of how many this is next."""
    what = fields.get("what", "request")
    reason = fields.get("reason")
    attempt = fields.get("attempt")
    text = f"retrying {what}" + (f" ({reason})" if reason else "")
    if isinstance(attempt, int):
        of = fields.get("of")
        text += f", attempt {attempt + 1}" + (f" of {of}" if isinstance(of, int) else "")
    return text


class HumanEvents:
    """A terminal or log renderer, with the library's events put in words: a retry, or a mirror that did not serve
    something, is one ``warning:`` line, the other events (``key=value`` lines) are passed on only at
    ``verbose >= 2``. Transfers go straight through."""

    def __init__(self, inner: Progress, console: Console, *, verbose: int = 0) -> None:
        self._inner = inner
        self._console = console
        self._verbose = verbose

    @property
    def inner(self) -> Progress:
        """The renderer of the transfers (bars or plain lines)."""
        return self._inner

    def start(self, key: str, description: str, total: int | None) -> None:
        self._inner.start(key, description, total)

    def advance(self, key: str, nbytes: int) -> None:
        self._inner.advance(key, nbytes)

    def finish(self, key: str, *, status: str = "done") -> None:
        self._inner.finish(key, status=status)

    def event(self, name: str, **fields: Any) -> None:
        if self._verbose >= 2:
            self._inner.event(name, **fields)
        elif name == "retry":
            self._console.print(
                f"warning: {retry_text(fields)}", markup=False, highlight=False, emoji=False, soft_wrap=True
            )
        elif name == "endpoint" and fields.get("outcome") == "failed" and fields.get("mirror") and not self._verbose:
            # Says why a blob's "failed" line is followed by its transfer from the next endpoint (-v logs it).
            text = (
                f"warning: {fields.get('what')} not served by mirror {fields.get('endpoint')} ({fields.get('error')})"
            )
            self._console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)


@contextmanager
def open_progress(*, json_lines: bool, quiet: bool, console: Console, verbose: int = 0) -> Iterator[Progress]:
    """The renderer for the options given: nothing (quiet), JSON lines, bars (terminal) or plain lines.

    ``console`` is the stderr console; the renderer is stopped (bars cleared of their live state) on exit.
    ``verbose`` (``-v`` counted) decides which library events a human sees (see the module docstring).
    """
    if quiet:
        yield NullProgress()
    elif json_lines:
        with JsonLinesProgress(console.file) as progress:
            yield progress
    elif console.is_terminal:
        from regtool.cli.bars import RichProgress

        with RichProgress(real_console(console)) as bars:
            yield HumanEvents(bars, real_console(console), verbose=verbose)
    else:
        with PlainProgress(console.file) as plain:
            yield HumanEvents(plain, console, verbose=verbose)


def __getattr__(name: str) -> Any:
    # RichProgress lives in bars.py, which imports rich.progress (~5 ms): only a terminal needs it.
    if name == "RichProgress":
        from regtool.cli.bars import RichProgress

        return RichProgress
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
