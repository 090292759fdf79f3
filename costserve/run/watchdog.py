"""The driver's watchdog: a worker that makes no progress for longer than the plan allows is declared stalled.

Progress is what the workers' shard reports put in results.sqlite (a shard started, a job
finished; run/shard_tasks.py), so the watchdog needs no channel of its own: each result is a
heartbeat. The allowance per
worker is STALL_FACTOR × the plan's predicted time for one shard on one worker, and never
less than the floor (COSTSERVE_STALL_FLOOR_S, default 300 s: loading a replica, converting
the embedded model on a first run). The factor is wide because the local roofline is known
to predict too fast (issue 16); a stall is a hang, not a slow run.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from costserve.store.results import shards_run, shards_started, shards_started_by, worker_activity

STALL_FACTOR = 10.0  # × the predicted seconds of one shard
STALL_FLOOR_S = 300.0  # s; COSTSERVE_STALL_FLOOR_S overrides it


def stall_allowance_s(makespan_s: float, jobs: int, shard_size: int, workers: int) -> float:
    """Seconds a worker may go without progress: STALL_FACTOR × (predicted s per shard on one worker), at least the floor.

    `makespan_s` is the plan's predicted run time (s) for `jobs` jobs on `workers` workers.
    """
    floor = float(os.environ.get("COSTSERVE_STALL_FLOOR_S", STALL_FLOOR_S))
    per_shard_s = makespan_s * workers * min(shard_size, jobs) / max(jobs, 1)
    return max(floor, STALL_FACTOR * per_shard_s)


def visibility_timeout_s(makespan_s: float, allowance_s: float) -> int:
    """Seconds Redis leaves an unacknowledged shard before redelivering it: above the longest a healthy worker holds
    one (the whole predicted run, `makespan_s`, plus the watchdog's `allowance_s`), and at least Celery's hour."""
    from workers.celery_app import VISIBILITY_TIMEOUT_S

    return int(max(VISIBILITY_TIMEOUT_S, 2 * makespan_s + allowance_s))


@dataclass
class Stall:
    """A worker (process group `pgid`) with no progress for `idle_s` seconds, and on what."""

    pgid: int
    idle_s: float
    on: str  # the shards it holds, or "starting" when it never began one


def stalled_workers(
    results: sqlite3.Connection,
    spawned: dict[int, float],
    done: set[str],
    queued: set[str],
    allowance_s: float,
    now: float,
) -> list[Stall]:
    """Workers (pgid → spawn time, unix s) that went `allowance_s` without progress while there was work for them.

    A worker holding unfinished shards is stalled when none of them advanced; an idle one only when
    some shard (`queued`, not `done`) was never started by anyone, i.e. it should have taken it.
    """
    activity = worker_activity(results)
    finished = shards_run(results) | done
    never_started = queued - done - shards_started(results)
    stalls = []
    for pgid, born in spawned.items():
        last = max(born, *activity.get(pgid, (born,)))
        holding = sorted(shards_started_by(results, pgid) - finished)
        if now - last > allowance_s and (holding or never_started):
            stalls.append(Stall(pgid, now - last, ", ".join(holding) if holding else "starting"))
    return stalls
