"""`costserve profile`: time decoder layers on this machine and write a device profile."""

from __future__ import annotations

import os
from pathlib import Path

from costserve.cli.output import console
from costserve.cli.terminal import counted_progress
from costserve.config import load_settings


def run_profile(device: str, model: str | None, out: Path | None, quick: bool = False) -> Path:
    """Profile `device` (cpu or cuda) with `model`'s layers (`quick`: workers.profile.QUICK's fewer points); write JSON,
    print a summary (predicted decode tokens/s), return the file's path."""
    from costserve.planning.machine_profile import profile_machine
    from solver.device_profile import decode_tokens_per_s
    from workers.model_source import model_name

    name = model or load_settings().default_model
    with counted_progress(f"profiling {device}") as progress:
        path, prof = profile_machine(device, name, out, quick, progress=progress)
    n = prof["layers"]
    summary = ", ".join(
        f"{b}-bit {decode_tokens_per_s(prof, [int(b)] * n, 16, 256):.0f}" for b in prof["layer_decode_ms"]
    )
    console.print(
        f"{device} ({os.cpu_count()} cores, {prof['threads']} threads), {model_name(name)}: predicted decode "
        f"tokens/s at batch 16, 256 cached tokens: {summary} -> {path}"
    )
    return path
