"""Garbage collection of the registry store: ``regtool serve gc`` offline, ``serve --gc-interval`` online.

``inventory`` reads the store through the driver, ``mark`` finds what is live, ``collector`` sweeps the rest in
a crash-safe order, ``report`` says what went, ``online`` runs passes inside the server.
"""

from __future__ import annotations

from regtool.server.gc.collector import DEFAULT_DELAY, GcOptions, collect_garbage
from regtool.server.gc.report import GcReport, Removal

__all__ = ["DEFAULT_DELAY", "GcOptions", "GcReport", "Removal", "collect_garbage"]
