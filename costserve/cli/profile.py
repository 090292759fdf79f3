"""`costserve profile`: time decoder layers on this machine and write a device profile."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from costserve.cli.output import console, err_console, fail
from costserve.config import ConfigError, load_settings


def run_profile(device: str, model: str | None, out: Path | None, quick: bool = False) -> Path:
    """Profile `device` (cpu or cuda) with `model`'s layers (`quick`: workers.profile.QUICK's fewer points); write JSON,
    print a summary, return the file's path."""
    from solver.device_profile import default_profile_path
    from workers.model_source import ModelSourceError, model_name, resolve_model_dir
    from workers.profile import QUICK, profile_device

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device on this machine (torch sees none)")
    try:
        name = model or load_settings().default_model
        model_dir = resolve_model_dir(name)
    except (ConfigError, ModelSourceError) as exc:
        fail(str(exc))
    name = model_name(name)
    progress = Progress(
        TextColumn(f"profiling {device}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    with progress:
        task = progress.add_task("profile", total=None)
        prof = profile_device(
            model_dir,
            name,
            device,
            progress=lambda d, t: progress.update(task, completed=d, total=t),
            **(QUICK if quick else {}),
        )  # type: ignore[arg-type]
    path = out or default_profile_path(device, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(prof, indent=1) + "\n")
    from solver.device_profile import decode_tokens_per_s

    n = prof["layers"]
    summary = ", ".join(
        f"{b}-bit {decode_tokens_per_s(prof, [int(b)] * n, 16, 256):.0f}" for b in prof["layer_decode_ms"]
    )
    console.print(
        f"{device} ({os.cpu_count()} cores, {prof['threads']} threads), {name}: predicted decode tokens/s "
        f"at batch 16, 256 cached tokens: {summary} -> {path}"
    )
    return path
