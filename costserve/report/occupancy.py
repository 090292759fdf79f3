"""Planned batch vs measured occupancy: did each replica run at the batch the plan costed it at?

Workers record the sequences in flight per round of their replica, in windows that are
each of one occupancy (workers/occupancy.py, table `occupancy` of
results.sqlite). A group's *steady* occupancy is the mean sequences in flight per round over its
windows from each worker's first full round until fewer jobs remained in the run than the group
has slots: the ramp-up before the first full batch and the drain at the very end do not count,
every dip in between does. A replica whose steady occupancy is below LOW_OCCUPANCY of its planned
batch ran slower than it was costed.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

LOW_OCCUPANCY = 0.9  # steady occupancy ÷ planned batch below which the report flags a group


@dataclass
class GroupOccupancy:
    """One fleet group's measured occupancy: sequences in flight per round (mean over steady rounds, and at most)."""

    queue: str  # the broker queue (routing key) its workers consumed
    slots: int  # each replica's slots: the planned batch it runs at
    workers: int
    steady: float | None  # mean sequences in flight per replica over its steady rounds (None: it never got full)
    peak: int
    steady_rounds: int

    @property
    def ratio(self) -> float | None:
        """Steady occupancy ÷ planned batch (None when the replica never had a full batch)."""
        return None if self.steady is None else self.steady / self.slots


def group_occupancy(con: sqlite3.Connection, jobs: int) -> dict[str, GroupOccupancy]:
    """Occupancy per queue of a run of `jobs` jobs, from its results database; {} before any worker recorded one."""
    try:
        rows = con.execute(
            "SELECT worker, queue, start, end, rounds, in_flight_sum, in_flight_max, slots FROM occupancy "
            "ORDER BY start"
        ).fetchall()
    except sqlite3.OperationalError:  # a run from before the table existed
        return {}
    by_queue: dict[str, list[tuple[str, float, float, int, int, int, int]]] = {}
    for worker, queue, *rest in rows:
        by_queue.setdefault(queue, []).append((worker, *rest))
    out = {}
    for queue, windows in by_queue.items():
        slots_of = {w: slots for w, *_, slots in windows}
        group_slots = sum(slots_of.values())
        end = _fewer_left_than(con, jobs, group_slots)
        first_full: dict[str, float] = {}
        total = rounds = 0
        for worker, start, _end, n, in_flight, peak, slots in windows:
            if peak >= slots and worker not in first_full:
                first_full[worker] = start
            if worker in first_full and (end is None or start < end):
                total, rounds = total + in_flight, rounds + n
        slots = max(slots_of.values())
        out[queue] = GroupOccupancy(
            queue, slots, len(slots_of), total / rounds if rounds else None, max(w[5] for w in windows), rounds
        )
    return out


def _fewer_left_than(con: sqlite3.Connection, jobs: int, slots: int) -> float | None:
    """When (unix s) fewer than `slots` of the run's `jobs` were left without a result; None while that has not happened."""
    row = con.execute(
        "SELECT finished FROM results ORDER BY finished LIMIT 1 OFFSET ?", (max(0, jobs - slots),)
    ).fetchone()
    return None if row is None else float(row[0])
