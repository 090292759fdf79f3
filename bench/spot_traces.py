"""Spot capacity traces for bench.deadline, in the public format of SkyPilot's `spot-traces` data set:
`{"metadata": {"gap_seconds": N}, "data": [instances available at each tick, ...]}`.

A trace's count at a tick is how many instances of its offering can be held then. Without trace files the bench makes
its own from published figures (`generated_trace`): SkyPilot's single-V100 spot traces show availability 17–90% of the
time by zone and 2–33 losses per available day; each generated trace draws its availability share uniformly in that
range and its losses per available day log-uniformly in that one, with exponential up and down periods.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AVAILABLE_SHARE = (0.17, 0.90)  # share of time a zone has spot capacity (SkyPilot spot-traces, single V100)
LOSSES_PER_DAY = (2.0, 33.0)  # losses per available day (same data set)
GAP_S = 600  # tick of a generated trace (s)
DAYS = 7  # length of a generated trace


@dataclass(frozen=True)
class Trace:
    """Instances of one offering that can be held at each tick of `gap_s` seconds; `source` says where it came from."""

    gap_s: float
    counts: tuple[int, ...]
    source: str

    def at(self, t: float, offset: float = 0.0) -> int:
        """Instances available at `t` s after a run began `offset` s into the trace (the trace wraps around)."""
        return self.counts[int((t + offset) // self.gap_s) % len(self.counts)]

    def low(self, start: float, end: float, offset: float = 0.0) -> int:
        """The fewest instances available at any tick between `start` and `end` (s into the run)."""
        ticks = range(int((start + offset) // self.gap_s), int((end + offset) // self.gap_s) + 1)
        return min(self.counts[k % len(self.counts)] for k in ticks)

    @property
    def length_s(self) -> float:
        return self.gap_s * len(self.counts)


def read_trace(path: Path) -> Trace:
    """A SkyPilot spot-traces JSON file; ValueError naming the file and field when it is not one."""
    try:
        data = json.loads(path.read_text())
        gap = float(data["metadata"]["gap_seconds"])
        counts = tuple(int(x) for x in data["data"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a spot trace ({{'metadata': {{'gap_seconds'}}, 'data': [...]}}): {exc}") from None
    if gap <= 0 or not counts or min(counts) < 0:
        raise ValueError(f"{path}: gap_seconds must be > 0 and data non-empty, non-negative counts")
    return Trace(gap, counts, path.name)


def generated_trace(rng: np.random.Generator, capacity: int) -> Trace:
    """A week of spot capacity for an offering of up to `capacity` instances, from the published figures above."""
    share = rng.uniform(*AVAILABLE_SHARE)
    losses = math.exp(rng.uniform(math.log(LOSSES_PER_DAY[0]), math.log(LOSSES_PER_DAY[1])))
    up_mean = 86400 / losses
    down_mean = up_mean * (1 - share) / share
    counts: list[int] = []
    available = rng.random() < share
    while len(counts) * GAP_S < DAYS * 86400:
        ticks = max(1, round(rng.exponential(up_mean if available else down_mean) / GAP_S))
        counts += [capacity if available else 0] * ticks
        available = not available
    return Trace(float(GAP_S), tuple(counts), f"generated ({share:.0%} available, {losses:.0f} losses/available day)")


def write_trace(trace: Trace, path: Path) -> None:
    """Write `trace` in the spot-traces format."""
    path.write_text(json.dumps({"metadata": {"gap_seconds": trace.gap_s}, "data": list(trace.counts)}))
