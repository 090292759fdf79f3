"""Write the user's offerings catalog atomically: a refresh either lands whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from catalog.load import load_offerings, user_catalog_dir

if TYPE_CHECKING:
    import pandas as pd


def save_offerings(offerings: pd.DataFrame, home: Path, gpus: pd.DataFrame) -> Path:
    """Write `$COSTSERVE_HOME/catalog/offerings.csv`; returns its path.

    The new file is written beside the old one, re-read through the same validation as
    every load, and only then renamed over it, so a failure leaves the old catalog as it was.
    """
    target = user_catalog_dir(home) / "offerings.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".offerings-", suffix=".csv", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            ordered = offerings.sort_values(["cloud", "region", "gpu", "gpu_count", "instance_type"])
            ordered.to_csv(handle, index=False)
        load_offerings(tmp, gpus)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
