"""The costserve wheel a fleet node installs, and the versions of everything around it: built once per run.

costserve is not on PyPI, and a node must run the code that planned its work, so nodes never
install it by name from an index: the driver builds its own wheel (`pip wheel --no-deps`, the
project's own build backend) and SkyPilot file-mounts it. Beside it goes `constraints.txt`:
the exact version of every package in the driver's environment, so a node installs what the
driver runs (not whatever resolves that day) and pip does not backtrack (without it, pip spends
minutes trying huggingface_hub releases against SkyPilot's click<8.2).
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import distributions
from pathlib import Path

from deploy.node_setup import CONSTRAINTS, NodeSetupError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def source_tree() -> Path:
    """The costserve source tree this process runs from; NodeSetupError when costserve runs from an installed wheel
    (its source is needed to build the nodes' wheel)."""
    pyproject = PROJECT_ROOT / "pyproject.toml"
    if not pyproject.is_file() or 'name = "costserve"' not in pyproject.read_text():
        raise NodeSetupError(
            f"costserve runs from {PROJECT_ROOT}, which is not its source tree: nodes install the wheel "
            "built from the source, so run the fleet from a checkout (`pip install -e .`)"
        )
    return PROJECT_ROOT


def write_constraints(path: Path) -> Path:
    """`name==version` for every package installed beside costserve here (costserve itself excepted). Local version
    labels are dropped (`torch 2.13.0+cpu` pins `torch==2.13.0`): a GPU node takes the same release in its CUDA build."""
    pins: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name and re.sub(r"[-_.]+", "-", name).lower() != "costserve":
            pins[re.sub(r"[-_.]+", "-", name).lower()] = dist.version.split("+")[0]
    path.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
    return path


def build_wheel(out_dir: Path, timeout_s: float = 600) -> Path:
    """The path of costserve's wheel in `out_dir`, built there with its CONSTRAINTS file unless one already is (a run
    builds it once: its replacement groups reuse it)."""
    existing = sorted(out_dir.glob("costserve-*.whl"))
    if existing:
        return existing[-1]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_constraints(out_dir / CONSTRAINTS)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out_dir), str(source_tree())],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    built = sorted(out_dir.glob("costserve-*.whl"))
    if proc.returncode != 0 or not built:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel written"]
        raise NodeSetupError(f"building the costserve wheel for the nodes failed: {last[0]}")
    return built[-1]
