"""Per-model quality profiles: per-layer log-perplexity increase at each bit-width.

Written by `costserve calibrate` to `$COSTSERVE_HOME/quality/<model>.json`; a profile
shipped in `catalog/data/quality/` is used when the user has not calibrated. Format:
`{"model", "base_perplexity", "tokens", "layer_loss": {"16": [...], "8": [...], "4": [...]}}`.
"""

from __future__ import annotations

import json
from pathlib import Path

from catalog.home import costserve_home

SHIPPED = Path(__file__).with_name("data") / "quality"


def user_profile_path(model: str) -> Path:
    """Where `costserve calibrate` writes the profile of `model`."""
    return costserve_home() / "quality" / f"{model}.json"


def load_layer_loss(model: str) -> dict[int, list[float]] | None:
    """Per-layer loss by bit-width for `model` (the user's calibration first, then the shipped one), or None."""
    for path in (user_profile_path(model), SHIPPED / f"{model}.json"):
        if path.is_file():
            data = json.loads(path.read_text())
            return {int(b): [float(x) for x in v] for b, v in data["layer_loss"].items()}
    return None
