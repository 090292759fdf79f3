"""Two first runs at once on a fresh machine: the embedded model is converted once, not raced into its directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RESOLVE = "from workers.model_source import resolve_model_dir; print(resolve_model_dir())"


def test_two_processes_resolving_the_embedded_model_at_once_share_one_conversion(costserve_home: Path) -> None:
    env = {**os.environ, "COSTSERVE_HOME": str(costserve_home)}
    procs = [subprocess.Popen([sys.executable, "-c", RESOLVE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err.decode()[-500:] for _, err in outs]
    (model_dir,) = {out.decode().strip() for out, _ in outs}
    assert (Path(model_dir) / "config.json").is_file()
    assert not list((costserve_home / "models").glob("*.partial"))
