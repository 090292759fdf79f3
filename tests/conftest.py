"""Shared fixtures: an isolated COSTSERVE_HOME and a CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True)
def costserve_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty COSTSERVE_HOME; no COSTSERVE_* variables leak in."""
    import os

    for key in list(os.environ):
        if key.startswith("COSTSERVE_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("COSTSERVE_HOME", str(home))
    return home


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()
