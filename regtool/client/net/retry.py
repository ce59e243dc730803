"""An immutable retry policy in the shape of urllib3's ``Retry``.

Only idempotent requests are retried, and only on connection errors, timeouts and the statuses that say
"try again" (408, 429, 500, 502, 503, 504). A ``Retry-After`` header (seconds or an HTTP date) is honoured up
to ``retry_after_max``; otherwise the delay is exponential with jitter, capped at ``backoff_max``.

One operation has one ``RetryBudget``: every retry of every request it makes draws from it, so a loop that
retries a whole blob upload around requests that retry themselves still makes at most ``total`` retries (the
budget is passed down instead of each level counting its own).

>>> policy = RetryPolicy(total=3)
>>> policy.allows("GET", 503), policy.allows("POST", 503), policy.allows("GET", 404)
(True, False, False)
>>> budget = RetryBudget(policy)
>>> [budget.take() for _ in range(3)], budget.exhausted
([0, 1, 2], True)
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from regtool.client.progress import Progress

__all__ = ["IDEMPOTENT_METHODS", "RETRY_STATUSES", "RetryBudget", "RetryLog", "RetryPolicy", "parse_retry_after"]

logger = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_RNG = random.Random()


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date; None when absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry. ``total`` is the number of retries after the first attempt."""

    total: int = 3
    backoff_factor: float = 0.2
    backoff_max: float = 10.0
    jitter: float = 0.2
    retry_after_max: float = 60.0
    statuses: frozenset[int] = field(default=RETRY_STATUSES)
    methods: frozenset[str] = field(default=IDEMPOTENT_METHODS)
    # Requests to keep in hand of a quota a registry states (net/ratelimit.py); None: quotas are not watched.
    rate_limit_floor: int | None = None

    def with_total(self, total: int) -> RetryPolicy:
        return replace(self, total=total)

    def allows_method(self, method: str) -> bool:
        return method.upper() in self.methods

    def allows(self, method: str, status: int) -> bool:
        """Whether a response with ``status`` to ``method`` may be retried at all (attempts aside)."""
        return self.allows_method(method) and status in self.statuses

    def exhausted(self, attempt: int) -> bool:
        """``attempt`` counts retries already made."""
        return attempt >= self.total

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt + 1``: factor * 2**attempt, capped, plus up to ``jitter`` of it."""
        base = min(self.backoff_max, self.backoff_factor * (2.0 ** min(attempt, 30)))
        spread = (rng or _RNG).uniform(0.0, self.jitter * base) if self.jitter else 0.0
        return min(self.backoff_max, base + spread)

    def delay(self, attempt: int, retry_after: str | None = None, *, now: float | None = None) -> float:
        """The wait before the next attempt: ``Retry-After`` (capped) when given, else the backoff."""
        after = parse_retry_after(retry_after, now=now)
        if after is not None:
            return min(after, self.retry_after_max)
        return self.backoff(attempt)


class RetryBudget:
    """The retries left to one operation under ``policy``; shared by all its requests (one task at a time)."""

    __slots__ = ("policy", "used")

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.used = 0

    @property
    def exhausted(self) -> bool:
        return self.policy.exhausted(self.used)

    @property
    def attempts(self) -> int:
        """The most attempts the operation can make: the first and ``total`` retries."""
        return self.policy.total + 1

    def take(self) -> int:
        """Use one retry; returns how many were used before it (the ``attempt`` of ``backoff``/``delay``)."""
        used = self.used
        self.used += 1
        return used


class RetryLog:
    """Where every retry is told: a log line (``-v``), a ``retry`` progress event (a JSON line
    under ``--json``) and a count that results report as ``retries``. Shared by one client's requests."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def record(self, what: str, *, attempt: int, delay: float, reason: str, of: int | None = None) -> None:
        """Retry number ``attempt`` (1 = the first retry) of ``what`` after ``delay`` seconds, because ``reason``;
        ``of`` is the most attempts allowed in all (the first one and the retries), when known."""
        with self._lock:
            self._count += 1
        logger.info("retry %d of %s in %.2fs: %s", attempt, what, delay, reason)
        if self.progress is not None:
            fields: dict[str, object] = {"what": what, "attempt": attempt, "delay": round(delay, 3), "reason": reason}
            if of is not None:
                fields["of"] = of
            self.progress.event("retry", **fields)
