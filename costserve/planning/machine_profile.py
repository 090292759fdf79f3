"""A device profile of this machine: time the model's decoder layers here and keep the result where plans look."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from costserve.errors import BadRequestError


def profile_machine(
    device: str,
    model: str,
    out: Path | None = None,
    quick: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Profile `device` (cpu or cuda) with `model`'s layers (`quick`: workers.profile.QUICK's fewer points; layer
    times in ms) and write the JSON to `out`, default where plans look for it; (its path, the profile).

    Raises BadRequestError without a CUDA device for `cuda`, ModelSourceError when the model cannot be had."""
    from solver.device_profile import default_profile_path
    from workers.model_source import model_name, resolve_model_dir
    from workers.profile import QUICK, profile_device

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BadRequestError("--device cuda: no CUDA device on this machine (torch sees none)")
    model_dir = resolve_model_dir(model)
    name = model_name(model)
    options: dict[str, Any] = dict(QUICK) if quick else {}
    prof = profile_device(model_dir, name, device, progress=progress, **options)
    path = out or default_profile_path(device, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(prof, indent=1) + "\n")
    return path, prof
