"""Staying above a registry's request quota: read what it says is left, slow down, pause before it runs out.

Registries that meter requests say how many are left in each response: ``RateLimit-Remaining: 42`` (the IETF
draft's header, with ``RateLimit-Reset: <seconds>`` until the quota refills), or Docker Hub's
``ratelimit-remaining: 76;w=21600`` (the same header name, as HTTP names are case-blind, with the window in
seconds after ``;w=``). Given a floor (``RetryPolicy.rate_limit_floor``, sync's ``--rate-limit-floor N``), the
client keeps ``N`` requests in hand for whoever else shares the quota:

- with more than ``2 * N`` left, nothing changes;
- with ``N + 1`` to ``2 * N`` left, requests to that host are spaced so that what is left above the floor lasts
  until the quota refills (the time to the reset, else the window, divided by the requests left above the floor);
- with ``N`` or fewer left, requests to that host pause until the quota refills (the reset, else the window,
  else ``DEFAULT_REFILL`` seconds), then go on; the next answer says where the quota stands.

Each slow-down or pause is told as a ``rate-limit`` progress event and an info log line. A 429 with
``Retry-After`` stays the retry policy's business (``RetryPolicy.delay``).

>>> parse_quota({"ratelimit-remaining": "76;w=21600"})
Quota(remaining=76, refill=21600.0)
>>> parse_quota({"RateLimit-Remaining": "3", "RateLimit-Reset": "12"})
Quota(remaining=3, refill=12.0)
>>> parse_quota({}) is None
True
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from regtool.client.progress import Progress

__all__ = ["DEFAULT_REFILL", "Quota", "RateLimiter", "parse_quota"]

logger = logging.getLogger(__name__)

# When a registry says how many requests are left but not when more come.
DEFAULT_REFILL = 60.0
_REMAINING_RE = re.compile(r"^\s*(\d+)\s*(?:;(.*))?$")
_WINDOW_RE = re.compile(r"(?:^|;)\s*w\s*=\s*(\d+)\s*(?:;|$)")


@dataclass(frozen=True, slots=True)
class Quota:
    """``remaining`` requests, refilled in ``refill`` seconds (None: not said)."""

    remaining: int
    refill: float | None


def parse_quota(headers: Mapping[str, str]) -> Quota | None:
    """The quota a response states, or None when it states none (or nothing that parses)."""
    value = headers.get("RateLimit-Remaining") or headers.get("ratelimit-remaining")
    if value is None:
        return None
    # A list of quotas (a policy per window) keeps its first; each is "count[;params]".
    match = _REMAINING_RE.match(value.split(",")[0])
    if match is None:
        return None
    refill: float | None = None
    reset = headers.get("RateLimit-Reset") or headers.get("ratelimit-reset")
    if reset is not None and reset.strip().isdigit():
        refill = float(reset.strip())
    elif match.group(2):
        window = _WINDOW_RE.search(match.group(2))
        if window is not None:
            refill = float(window.group(1))
    return Quota(int(match.group(1)), refill)


@dataclass(slots=True)
class _HostPace:
    paused_until: float = 0.0
    spacing: float = 0.0
    last_start: float = float("-inf")


class RateLimiter:
    """Per-host pacing from the quotas responses state; ``floor`` None turns it off (every call returns at once).

    ``wait(host)`` before each request, ``observe(host, headers)`` with each response.
    """

    def __init__(
        self,
        floor: int | None,
        *,
        progress: Callable[[], Progress | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.floor = floor
        self._progress = progress
        self._clock = clock
        self._hosts: dict[str, _HostPace] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def enabled(self) -> bool:
        return self.floor is not None

    def observe(self, host: str, headers: Mapping[str, str]) -> None:
        """Take in the quota ``headers`` state for ``host`` (nothing happens without a floor or a quota)."""
        if self.floor is None:
            return
        quota = parse_quota(headers)
        if quota is None:
            return
        pace = self._hosts.setdefault(host, _HostPace())
        headroom = quota.remaining - self.floor
        refill = quota.refill if quota.refill is not None else DEFAULT_REFILL
        now = self._clock()
        if headroom <= 0:
            # Told once per pause: the answers of requests already under way say the same.
            if pace.paused_until <= now:
                self._tell(host, quota, "pause", refill)
            pace.paused_until = max(pace.paused_until, now + refill)
            pace.spacing = 0.0
        elif headroom <= self.floor:
            spacing = refill / headroom
            if spacing != pace.spacing:
                self._tell(host, quota, "slow", spacing)
            if pace.spacing == 0.0:
                # The request just answered is the last one sent: the spacing counts from it.
                pace.last_start = max(pace.last_start, now)
            pace.spacing = spacing
        else:
            pace.spacing = 0.0

    async def wait(self, host: str) -> None:
        """Return when a request to ``host`` may go (at once unless its quota is near the floor)."""
        pace = self._hosts.get(host)
        if pace is None or (pace.spacing == 0.0 and pace.paused_until <= self._clock()):
            return
        lock = self._locks.setdefault(host, asyncio.Lock())
        # One request at a time through a paced host, so the spacing holds under concurrency.
        async with lock:
            now = self._clock()
            start = max(now, pace.paused_until, pace.last_start + pace.spacing)
            pace.last_start = start
            if start > now:
                await asyncio.sleep(start - now)

    def _tell(self, host: str, quota: Quota, action: str, seconds: float) -> None:
        if action == "pause":
            logger.info("%s: %d requests left (floor %s): pausing %.1fs", host, quota.remaining, self.floor, seconds)
        else:
            logger.info(
                "%s: %d requests left (floor %s): one request every %.2fs", host, quota.remaining, self.floor, seconds
            )
        progress = self._progress()
        if progress is not None:
            progress.event(
                "rate-limit",
                host=host,
                remaining=quota.remaining,
                floor=self.floor,
                action=action,
                seconds=round(seconds, 3),
            )
