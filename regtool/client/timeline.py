"""Timelines: every Progress call of a run, time-stamped, and the waterfall rows they make.

:class:`TimelineRecorder` is a :class:`~regtool.client.progress.Progress` that wraps the renderer in use (bars,
plain lines, JSON lines or nothing): it stamps each call with ``time.monotonic()`` and passes it on, so the output
of the run is unchanged. It is the only source of a timeline: the library reports what it does through Progress
alone, so there is nothing else to instrument:

- blob transfers are ``start`` .. ``finish`` (the first byte asked for to the last byte verified);
- the ``image`` event says which blobs are configs and which are layers (:func:`~regtool.client.progress.
  report_image`);
- every HTTP request the client's httpx client sends (pings, manifests, tokens, upload sessions, v1 JSON) is an
  ``http`` event with its method, URL, status and duration, from httpx's event hooks (``Client``);
- retries are ``retry`` events with the delay before the next attempt.

:meth:`Timeline.from_records` turns the records into rows, one per blob transfer or request, each with a kind
(:data:`KINDS`). A request for a blob's body (a v1 layer comes through httpx) is counted in that blob's row
rather than drawn twice. The renderers (SVG, terminal) live in ``regtool.cli.waterfall``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from regtool.client.progress import NullProgress, Progress

__all__ = ["FORMAT", "KINDS", "Record", "Row", "Timeline", "TimelineRecorder"]

# Row kinds, in legend order; "other" is every request that is none of the rest (ping, tags, upload sessions...).
KINDS = ("manifest", "config", "layer", "auth", "retry", "other")
# The ``format`` of a timeline's JSON document, and its version.
FORMAT = "regtool-timeline"
VERSION = 1

_V2_BLOB = re.compile(r"/v2/.+/blobs/([a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)$")
_V1_IMAGE = re.compile(r"/v1/images/([0-9a-f]{64})/(json|layer)$")
_MANIFEST = re.compile(r"/v2/.+/manifests/[^/]+$")
_LONG_HEX = re.compile(r"[0-9a-f]{13,}")
# A request ending this close after its transfer finished still belongs to it (stamps are taken in two places).
_SLACK = 0.005


@dataclass(frozen=True, slots=True)
class Record:
    """One Progress call: ``t`` seconds after the recorder started, ``call`` (start, advance, finish, event)."""

    t: float
    call: str
    key: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"t": round(self.t, 6), "call": self.call}
        if self.key is not None:
            record["key"] = self.key
        record["fields"] = dict(self.fields)
        return record

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        key = data.get("key")
        return cls(float(data["t"]), str(data["call"]), None if key is None else str(key), dict(data["fields"]))


class TimelineRecorder:
    """A Progress that records every call with its time and forwards it to ``inner``.

    The library calls Progress from worker threads too, so recording takes a lock; the stamp is taken under it,
    which keeps :attr:`records` in time order.
    """

    def __init__(self, inner: Progress | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner: Progress = inner if inner is not None else NullProgress()
        self._clock = clock
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._t0 = clock()
        self.started_at = time.time()

    @property
    def inner(self) -> Progress:
        """The renderer the calls are passed on to."""
        return self._inner

    def _record(self, call: str, key: str | None, fields: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(Record(self._clock() - self._t0, call, key, fields))

    def start(self, key: str, description: str, total: int | None) -> None:
        self._record("start", key, {"description": description, "total": total})
        self._inner.start(key, description, total)

    def advance(self, key: str, nbytes: int) -> None:
        self._record("advance", key, {"bytes": nbytes})
        self._inner.advance(key, nbytes)

    def finish(self, key: str, *, status: str = "done") -> None:
        self._record("finish", key, {"status": status})
        self._inner.finish(key, status=status)

    def event(self, name: str, **fields: Any) -> None:
        self._record("event", None, {"name": name, **fields})
        self._inner.event(name, **fields)

    @property
    def records(self) -> list[Record]:
        """Everything recorded so far, oldest first."""
        with self._lock:
            return list(self._records)

    def timeline(self) -> Timeline:
        """The rows of what was recorded so far."""
        return Timeline.from_records(self.records)

    def to_json(self) -> dict[str, Any]:
        """The raw records as a JSON document (``Timeline.from_json`` reads it back)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "started_at": round(self.started_at, 3),
            "records": [record.to_json() for record in self.records],
        }


@dataclass(frozen=True, slots=True)
class Row:
    """One bar of the waterfall: a blob transfer, a request or a retry's wait, ``start``..``end`` in seconds."""

    label: str
    kind: str
    start: float
    end: float
    status: str
    nbytes: int = 0
    key: str | None = None
    requests: int = 0

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Timeline:
    """The rows of a run in waterfall order (by start), its total seconds and the blob bytes it moved."""

    rows: tuple[Row, ...]
    total: float
    nbytes: int
    protocol: str | None = None

    @property
    def rate(self) -> float:
        """Blob bytes per second over the whole run."""
        return self.nbytes / self.total if self.total > 0 else 0.0

    def of_kind(self, *kinds: str) -> list[Row]:
        return [row for row in self.rows if row.kind in kinds]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Timeline:
        """The timeline of a document written from :meth:`TimelineRecorder.to_json`."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document")
        return cls.from_records(Record.from_json(item) for item in data["records"])

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> Timeline:
        """The rows of ``records``; the total runs from the recorder's start to the last record (or the end of a
        retry's wait), so it does not depend on when it is asked for."""
        records = list(records)
        configs, realms, protocol = _facts(records)
        transfers = _transfers(records, configs)
        rows = [t.row() for t in transfers]
        folded: dict[int, int] = {}
        for record in records:
            if record.call != "event":
                continue
            name = record.fields.get("name")
            if name == "http":
                request = _request_row(record, configs, realms)
                owner = _owner(request, transfers)
                if owner is None:
                    rows.append(request)
                else:
                    folded[owner] = folded.get(owner, 0) + 1
            elif name == "retry":
                delay = record.fields.get("delay")
                wait = float(delay) if isinstance(delay, int | float) else 0.0
                what = str(record.fields.get("what", "request"))
                reason = str(record.fields.get("reason", ""))
                rows.append(Row(f"retry {what}", "retry", record.t, record.t + wait, reason))
        for index, count in folded.items():
            old = rows[index]
            rows[index] = Row(old.label, old.kind, old.start, old.end, old.status, old.nbytes, old.key, count)
        rows.sort(key=lambda row: (row.start, row.end, row.label))
        end = max([0.0, *(record.t for record in records), *(row.end for row in rows)])
        nbytes = sum(row.nbytes for row in rows)
        return cls(tuple(rows), end, nbytes, protocol)


@dataclass
class _Transfer:
    key: str
    kind: str
    label: str
    start: float
    end: float | None = None
    status: str = "unfinished"
    nbytes: int = 0

    def row(self) -> Row:
        end = self.start if self.end is None else self.end
        return Row(self.label, self.kind, self.start, end, self.status, self.nbytes, self.key)


def _facts(records: list[Record]) -> tuple[set[str], set[str], str | None]:
    """The config digests (``image`` events), the token realms (401 challenges) and the protocol (``summary``)."""
    configs: set[str] = set()
    realms: set[str] = set()
    protocol: str | None = None
    for record in records:
        name = record.fields.get("name") if record.call == "event" else None
        if name == "image" and record.fields.get("config"):
            configs.add(str(record.fields["config"]))
        elif name == "http" and record.fields.get("realm"):
            realms.add(_without_query(str(record.fields["realm"])))
        elif name == "summary" and record.fields.get("protocol"):
            protocol = str(record.fields["protocol"])
    return configs, realms, protocol


def _transfers(records: list[Record], configs: set[str]) -> list[_Transfer]:
    done: list[_Transfer] = []
    open_: dict[str, _Transfer] = {}
    for record in records:
        key = record.key
        if key is None:
            continue
        if record.call == "start":
            kind = "config" if key in configs else "layer"
            label = _transfer_label(kind, key, str(record.fields.get("description") or ""))
            transfer = _Transfer(key, kind, label, record.t)
            open_[key] = transfer
            done.append(transfer)
        elif record.call == "advance" and key in open_:
            open_[key].nbytes += int(record.fields.get("bytes", 0))
        elif record.call == "finish" and key in open_:
            transfer = open_.pop(key)
            transfer.end = record.t
            transfer.status = str(record.fields.get("status", "done"))
    last = max((record.t for record in records), default=0.0)
    for transfer in open_.values():
        transfer.end = last  # still running when the recording ended: drawn to its end
    return done


def _transfer_label(kind: str, key: str, description: str) -> str:
    words = (description or key).split()
    if len(words) > 1 and words[0] in ("layer", "blob", "config"):
        words = words[1:]
    return f"{kind} {_short(' '.join(words))}"


def _short(text: str) -> str:
    # Digests and v1 ids are long: 12 hex digits tell them apart, as docker shows them.
    return _LONG_HEX.sub(lambda match: match.group(0)[:12], text)


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _request_row(record: Record, configs: set[str], realms: set[str]) -> Row:
    fields = record.fields
    method = str(fields.get("method", "GET"))
    url = str(fields.get("url", ""))
    path = urlsplit(url).path
    seconds = fields.get("seconds")
    start = record.t - (float(seconds) if isinstance(seconds, int | float) else 0.0)
    status = str(fields.get("status", ""))
    key: str | None = None
    if _without_query(url) in realms:
        kind = "auth"
    elif _MANIFEST.search(path):
        kind = "manifest"
    elif blob := _V2_BLOB.search(path):
        key = blob.group(1)
        kind = "config" if key in configs else "layer"
    elif image := _V1_IMAGE.search(path):
        # A v1 image's JSON is what its config is made from; its layer is the blob itself.
        kind = "config" if image.group(2) == "json" else "layer"
        key = f"v1:{image.group(1)}" if image.group(2) == "layer" else None
    else:
        kind = "other"
    return Row(f"{method} {_short(path)}", kind, start, record.t, status, key=key)


def _owner(request: Row, transfers: list[_Transfer]) -> int | None:
    """The index of the transfer a blob-body request belongs to, if any."""
    if request.key is None:
        return None
    candidates = [i for i, t in enumerate(transfers) if t.key == request.key]
    for index in candidates:
        transfer = transfers[index]
        end = transfer.end if transfer.end is not None else float("inf")
        if transfer.start - _SLACK <= request.end <= end + _SLACK:
            return index
    return candidates[0] if candidates else None
