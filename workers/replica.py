"""Reading the replica a worker runs (`solver.plan.Replica`, the one contract) and placing its stages here.

Stage `device` is "cpu" or "cuda[:i]"; a planner GPU name (e.g. "L4") means "this machine's
accelerator" and maps to cuda when one exists, else cpu. Bits per layer: 32, 16, 8 or 4.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from solver.plan import Replica, ReplicaError, Stage

__all__ = ["Replica", "ReplicaError", "Stage", "read_replica", "torch_device"]


def torch_device(stage: Stage) -> str:
    """The torch device `stage` runs on here: cuda when asked for and present, else cpu."""
    import torch

    if stage.device.startswith("cuda") or stage.device.lower() not in ("cpu", "host"):
        if torch.cuda.is_available():
            return stage.device if stage.device.startswith("cuda") else "cuda"
    return "cpu"


def read_replica(path: Path) -> Replica:
    """Read a replica JSON file: a bare Replica, or a Plan (its first group's replica is used)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ReplicaError(f"{path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise ReplicaError(f"{path}:{e.lineno}: not JSON: {e.msg}") from None
    if isinstance(data, dict) and "groups" in data:
        if not data["groups"]:
            raise ReplicaError(f"{path}: the plan has no fleet groups")
        data = data["groups"][0]["replica"]
    try:
        return Replica.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "replica"
        raise ReplicaError(f"{path}: {where}: {err['msg']}") from None
