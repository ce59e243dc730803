"""Fixtures of the v1 tests: ``serve`` is a real in-process regtool serve (tests.support.serve)."""

from __future__ import annotations

from tests.support.serve import serve

__all__ = ["serve"]
