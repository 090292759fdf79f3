"""How many instances and GPUs can be had: catalog defaults, the user's file, and `--available`.

Precedence: `--available GPU=N` (a cap on GPUs of that type across the whole fleet) over
`$COSTSERVE_HOME/availability.csv` (instances per offering) over the `availability` column
of the offerings catalog.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from catalog.load import CatalogError, read_rows

if TYPE_CHECKING:
    import pandas as pd

AVAILABILITY_FILE = "availability.csv"


class AvailabilityRow(BaseModel):
    """One override: instances of `instance_type` on `cloud` (in `region`, or every region when empty)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cloud: str = Field(min_length=1)
    region: str | None = None
    instance_type: str = Field(min_length=1)
    availability: int = Field(ge=0, description="instances")
    source: str = "user"
    as_of: str | None = None


def parse_gpu_limits(text: str | None, known_gpus: set[str]) -> dict[str, int]:
    """Parse `H100=2,L4=16` into {gpu: max GPUs}. Raises ValueError naming the bad item."""
    limits: dict[str, int] = {}
    if not text:
        return limits
    for item in text.split(","):
        name, sep, count = item.strip().partition("=")
        if not sep or not name or not count:
            raise ValueError(f"--available: {item.strip()!r} is not GPU=COUNT (e.g. H100=2,L4=16)")
        if name not in known_gpus:
            raise ValueError(f"--available: unknown GPU {name!r} (known: {', '.join(sorted(known_gpus))})")
        if not count.isdigit():
            raise ValueError(f"--available: {item.strip()!r}: COUNT must be a whole number of GPUs")
        limits[name] = int(count)
    return limits


def apply_availability(
    offerings: pd.DataFrame, home: Path | None, gpu_limits: dict[str, int] | None = None
) -> pd.DataFrame:
    """Offerings with `availability` (instances) after the user's file and the per-GPU caps.

    A GPU cap of N limits every offering of that GPU to floor(N / gpu_count) instances; the
    fleet-wide total is the planner's constraint.
    """
    df = offerings.copy()
    path = home / AVAILABILITY_FILE if home is not None else None
    if path is not None and path.exists():
        overrides = read_rows(path, AvailabilityRow)
        for line, row in enumerate(overrides.itertuples(index=False), start=2):
            match = (df["cloud"] == row.cloud) & (df["instance_type"] == row.instance_type)
            region = row.region if isinstance(row.region, str) and row.region else None
            if region:
                match &= df["region"] == region
            if not match.any():
                raise CatalogError(
                    f"{path}:{line}: instance_type: no offering {row.cloud}/{region or '*'}/{row.instance_type}"
                )
            df.loc[match, "availability"] = row.availability
    for gpu, cap in (gpu_limits or {}).items():
        rows = df["gpu"] == gpu
        per_instance = df.loc[rows, "gpu_count"].clip(lower=1)
        df.loc[rows, "availability"] = df.loc[rows, "availability"].clip(upper=cap // per_instance)
    return df
