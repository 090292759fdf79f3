"""`costserve calibrate`: write a model's quality profile, or check a replica's predicted perplexity."""

from __future__ import annotations

from pathlib import Path

from catalog.quality_profiles import user_profile_path
from costserve.cli.output import console, fail
from costserve.cli.terminal import counted_progress
from costserve.config import ConfigError, load_settings


def run_quality_profile(model: str | None, replica_path: Path | None, out: Path | None) -> None:
    """Calibrate `model` (writes the profile) or, with a replica, print measured vs predicted perplexity."""
    from workers.model_source import ModelSourceError, model_name, resolve_model_dir
    from workers.quality_profile import QualityProfile, profile_quality, replica_perplexity
    from workers.replica import ReplicaError, read_replica

    try:
        name = model or load_settings().default_model
        model_dir = resolve_model_dir(name)
        replica = read_replica(replica_path) if replica_path else None
    except (ConfigError, ModelSourceError, ReplicaError) as exc:
        fail(str(exc))
    name = model_name(name)
    path = out or user_profile_path(name)
    if replica is not None:
        measured = replica_perplexity(model_dir, replica.bits)
        line = f"{replica_path}: measured perplexity {measured:.3f}"
        if path.is_file():
            predicted = QualityProfile.load(path).predicted_perplexity(replica.bits)
            line += f", predicted {predicted:.3f} ({(predicted / measured - 1) * 100:+.1f}%) from {path}"
        else:
            line += f" (no quality profile at {path}: run `costserve calibrate --model {name}` for a prediction)"
        console.print(line)
        return
    with counted_progress(f"calibrating {name}") as progress:
        profile = profile_quality(model_dir, name, progress=progress)
    profile.save(path)
    worst = {b: max(v) for b, v in profile.layer_loss.items()}
    console.print(
        f"{name}: perplexity {profile.base_perplexity:.3f} on {profile.tokens} tokens; most sensitive layer "
        + ", ".join(f"{b}-bit +{(2.718281828**w - 1) * 100:.2f}%" for b, w in worst.items())
        + f" -> {path}"
    )
