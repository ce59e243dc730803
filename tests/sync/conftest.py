from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.distribution import distribution  # noqa: F401


@pytest.fixture(autouse=True)
def _clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ambient credentials, and upload sessions remembered under this test's directory."""
    for name in ("USERNAME", "PASSWORD"):
        monkeypatch.delenv(f"REGTOOL_{name}", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("REGTOOL_STATE_DIR", str(tmp_path / "state"))
