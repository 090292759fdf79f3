"""Combine refreshed offerings with the catalog in force."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

OFFERING_KEY = ["cloud", "region", "instance_type", "gpu", "gpu_count"]
# Instances assumed available for a refreshed offering the catalog did not have before:
# enough for 8 GPUs, at least one instance. `availability.csv` overrides it.
NEW_OFFERING_GPUS_AVAILABLE = 8


def known_availability(current: pd.DataFrame, fresh: pd.DataFrame) -> list[int]:
    """Per `fresh` row, the availability its offering had in `current`, or enough instances for
    NEW_OFFERING_GPUS_AVAILABLE GPUs (at least one)."""
    known = current.set_index(OFFERING_KEY)["availability"]
    default = (NEW_OFFERING_GPUS_AVAILABLE // fresh["gpu_count"].clip(lower=1)).clip(lower=1)
    return [int(known.get(k, d)) for k, d in zip(fresh[OFFERING_KEY].itertuples(index=False, name=None), default)]


def merge_offerings(current: pd.DataFrame, fresh: pd.DataFrame, replaced: pd.Series) -> pd.DataFrame:
    """`current` minus the rows where `replaced` is true, plus `fresh`.

    A `fresh` without `availability` keeps each offering's from `current` (known_availability); optional columns
    it lacks (`availability_source`, `spot_interruption`) are empty.
    """
    import pandas as pd

    if "availability" not in fresh.columns:
        fresh = fresh.assign(availability=known_availability(current, fresh))
    for column in ("availability_source", "spot_interruption"):
        if column not in fresh.columns:
            fresh = fresh.assign(**{column: None})
    return pd.concat([current[~replaced], fresh[current.columns]], ignore_index=True)


def match_gpu(name: str, memory_gib: float, gpus: pd.DataFrame) -> str | None:
    """costserve's gpu for a cloud's GPU name and per-GPU memory (GiB), or None if unknown.

    Candidates share the name as their `gpu` or `sky_name` prefix (A100 -> A100-40GB and
    A100-80GB); the one with the closest memory wins; the first listed wins a tie (SXM).
    """
    key = name.strip().lower()
    named = gpus[
        gpus["gpu"].str.lower().str.split("-").str[0].eq(key) | gpus["sky_name"].fillna("").str.lower().eq(key)
    ]
    if named.empty:
        return None
    distance = (named["memory_gib"] - memory_gib).abs()
    return str(named.loc[distance.idxmin(), "gpu"])
