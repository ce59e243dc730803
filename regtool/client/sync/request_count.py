"""Counting the registry requests one piece of a sync's work sends, so the output can say what an option cost.

The client reports every API request as an ``http`` progress event from inside the task that sent it (httpx
calls its event hooks in the request's own task). :class:`RequestCounting` wraps the client's progress and adds
each such event to the counter that :func:`counting` made current in that task; tasks the work starts inherit
the counter (asyncio copies the context into a new task), and concurrent work elsewhere in the run is not
counted. Blob bodies move outside httpx, but their request (the GET, the PUT) is an event like any other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from regtool.client.progress import Progress

__all__ = ["RequestCount", "RequestCounting", "counting"]


@dataclass
class RequestCount:
    """Requests seen so far by one :func:`counting` block."""

    requests: int = 0


_current: ContextVar[RequestCount | None] = ContextVar("regtool_sync_request_count", default=None)


@contextlib.contextmanager
def counting() -> Iterator[RequestCount]:
    """Count the requests this task (and the tasks it starts) sends inside the block."""
    count = RequestCount()
    token = _current.set(count)
    try:
        yield count
    finally:
        _current.reset(token)


class RequestCounting:
    """A Progress that passes every call on and counts ``http`` events into the current :func:`counting`."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner

    def start(self, key: str, description: str, total: int | None) -> None:
        self.inner.start(key, description, total)

    def advance(self, key: str, nbytes: int) -> None:
        self.inner.advance(key, nbytes)

    def finish(self, key: str, *, status: str = "done") -> None:
        self.inner.finish(key, status=status)

    def event(self, name: str, **fields: Any) -> None:
        if name == "http":
            count = _current.get()
            if count is not None:
                count.requests += 1
        self.inner.event(name, **fields)
