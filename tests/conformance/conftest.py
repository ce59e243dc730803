"""The conformance suite's registry: a real regtool serve per test, once per storage driver.

A driver joins the suite by adding its name to ``DRIVERS`` and a branch to ``_config_for``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.serve import RunningServe, run_serve

DRIVERS = ["filesystem", "inmemory"]


def _config_for(driver: str, tmp_path: Path) -> dict[str, Any]:
    """The ``run_serve`` arguments that put the registry on ``driver``."""
    if driver == "filesystem":
        return {"root": tmp_path / "registry"}
    if driver == "inmemory":
        return {"root": None, "storage": "inmemory"}
    raise AssertionError(f"no conformance set-up for driver {driver!r}")


@pytest.fixture(params=DRIVERS)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServe]:
    settings = _config_for(request.param, tmp_path)
    with run_serve(**settings) as running:
        yield running


@pytest.fixture
def client(registry: RunningServe) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=30) as http:
        yield http
