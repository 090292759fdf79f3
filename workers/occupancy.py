"""Sequences in flight per round of a replica, summarised into windows: what ran, beside the batch that was planned.

The batcher (workers/batching.py) and the vLLM engine record every round; a worker writes the windows to the run's
results database (or returns them with a remote shard's results); costserve/report/occupancy.py reads them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

OCCUPANCY_WINDOW_S = 2.0  # s; one occupancy record summarises the rounds of this long (bounded rows at any batch size)


@dataclass
class OccupancyWindow:
    """Rounds of one replica between `start` and `end` (unix s): how many, and the sequences in flight over them."""

    start: float
    end: float
    rounds: int
    in_flight_sum: int  # Σ over rounds of the sequences in flight (running in the replica's slots)
    in_flight_max: int
    slots: int  # the replica's slots (its planned batch)


class Occupancy:
    """Sequences in flight per round, summarised into windows handed to `sink` as they close.

    A window closes after OCCUPANCY_WINDOW_S and whenever the sequences in flight change, so every round of a window
    had the same occupancy: a report can cut a run into ramp-up, steady state and drain at window boundaries. Rows
    stay few where it matters: one per OCCUPANCY_WINDOW_S while the replica stays full, one per change otherwise."""

    def __init__(
        self, slots: int, sink: Callable[[OccupancyWindow], None], window_s: float = OCCUPANCY_WINDOW_S
    ) -> None:
        self.slots, self.sink, self.window_s = slots, sink, window_s
        self.current: OccupancyWindow | None = None

    def record(self, in_flight: int, now: float | None = None) -> None:
        """One round with `in_flight` sequences in the replica's slots."""
        now = time.time() if now is None else now
        w = self.current
        if w is not None and in_flight != w.in_flight_max:
            self.flush()  # a window holds rounds of one occupancy
            w = None
        if w is None:
            w = self.current = OccupancyWindow(now, now, 0, 0, 0, self.slots)
        w.end, w.rounds, w.in_flight_sum = now, w.rounds + 1, w.in_flight_sum + in_flight
        w.in_flight_max = max(w.in_flight_max, in_flight)
        if now - w.start >= self.window_s:
            self.flush()

    def flush(self) -> None:
        """Hand the open window to the sink (at the end of a feed, or when it is full)."""
        if self.current is not None and self.current.rounds:
            self.sink(self.current)
        self.current = None
