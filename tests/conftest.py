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


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded SmolLM2-135M converted to safetensors once per test session (~25 s)."""
    from engine_fixtures import convert_smollm2

    return convert_smollm2(tmp_path_factory.mktemp("models") / "SmolLM2-135M")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    """A 4-layer random Llama with SmolLM2's tokenizer, for fast engine tests."""
    from engine_fixtures import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("models") / "tiny", smollm2_dir)
