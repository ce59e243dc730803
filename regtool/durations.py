"""Durations as people and distribution's config write them: ``168h``, ``30m``, ``1h30m``, ``90s``, ``2d``, ``3600``.

Go's ``time.ParseDuration`` units (h, m, s, ms) plus ``d`` for days; a bare number is seconds. One parser for
every server option that takes a duration, so ``--proxy-ttl 168h`` and ``proxy: {ttl: 168h}`` agree.
"""

from __future__ import annotations

import re

from regtool.errors import UsageError

__all__ = ["parse_duration"]

_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Seconds in ``text``; UsageError naming ``what`` and the text when it is not a duration."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
        position = 0
        total = 0.0
        for match in _PART_RE.finditer(value):
            if match.start() != position:
                break
            total += float(match.group(1)) * _SECONDS[match.group(2)]
            position = match.end()
        if value and position == len(value):
            seconds = total
    if not seconds >= 0 or seconds == float("inf"):
        raise UsageError(f"invalid {what} {text!r}: expected e.g. 168h, 30m, 90s, 1h30m or a number of seconds")
    return seconds
