"""Shard files a worker reads and the result rows it writes, inside a run directory.

A shard is `RUN_DIR/shards/<shard_id>.jsonl`, one `Job.to_json` object per line, written by
the driver. Results go to `RUN_DIR/results.sqlite`, keyed by `custom_id`: a redelivered
shard overwrites its rows instead of adding new ones. The run store (costserve/store/results.py)
creates that database and reads it; this module holds only the worker's write calls.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from solver.plan import Job


RESULTS_FILE = "results.sqlite"  # in the run directory; the driver (costserve/store/results.py) creates it
LOCK_TIMEOUT_S = 60

def shard_path(run_dir: Path, shard_id: str) -> Path:
    return Path(run_dir) / "shards" / f"{shard_id}.jsonl"


def write_shard(run_dir: Path, shard_id: str, jobs: list[Job]) -> Path:
    """Write jobs as a shard file (one `Job.to_json` object per line); returns its path."""
    path = shard_path(run_dir, shard_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for j in jobs:
            f.write(json.dumps(j.to_json()) + "\n")
    return path


def read_shard(run_dir: Path, shard_id: str) -> list[Job]:
    """The jobs of a shard file, in order."""
    with shard_path(run_dir, shard_id).open() as f:
        return [Job.from_json(json.loads(line)) for line in f if line.strip()]


def connect_results(run_dir: Path) -> sqlite3.Connection:
    """The run's results database, whose tables the driver created (costserve/store/results.py owns the schema).

    Writers wait up to LOCK_TIMEOUT_S (s) for another worker's write lock.
    """
    return sqlite3.connect(Path(run_dir) / RESULTS_FILE, timeout=LOCK_TIMEOUT_S)


def save_result(con: sqlite3.Connection, custom_id: str, line: int, shard: str, output: dict[str, Any], attempt: int,
                tokens: int = 0, finished: float | None = None) -> None:
    """Insert or overwrite one job's output line, stamped with the time it finished (unix s, default now) and its output tokens."""
    con.execute("INSERT OR REPLACE INTO results (custom_id, line, shard, output, attempt, finished, tokens) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (custom_id, line, shard, json.dumps(output), attempt, time.time() if finished is None else finished, tokens))
    con.commit()


def mark_shard_started(con: sqlite3.Connection, shard: str, since: float = 0.0) -> int:
    """Record that this process (and its process group: one `costserve worker`) started a shard, so the driver can
    re-queue it if that worker dies before finishing; returns this attempt's number: the shard's starts since `since`
    (unix s, when the driver queued the run: a resumed run starts counting again), Celery retries and the driver's
    re-queues alike."""
    import os

    con.execute("INSERT INTO shard_starts VALUES (?, ?, ?, ?)", (shard, os.getpgid(0), os.getpid(), time.time()))
    con.commit()
    return int(con.execute("SELECT COUNT(*) FROM shard_starts WHERE shard = ? AND started >= ?", (shard, since)).fetchone()[0])


def shard_done_ids(con: sqlite3.Connection, shard: str) -> set[str]:
    """custom_ids of a shard that already have a result (an earlier attempt wrote them)."""
    return {cid for (cid,) in con.execute("SELECT custom_id FROM results WHERE shard = ?", (shard,))}


def save_shard_failure(con: sqlite3.Connection, shard: str, worker: str, attempt: int, error: str, final: bool) -> None:
    """Record one failed attempt at a shard (`final`: no retry follows), for the driver's live view and its stop reason."""
    con.execute("INSERT INTO shard_failures VALUES (?, ?, ?, ?, ?, ?)", (shard, worker, attempt, error, int(final), time.time()))
    con.commit()


def save_shard_run(con: sqlite3.Connection, shard: str, worker: str, queue: str, attempt: int, started: float,
                   jobs: int, tokens: int, errors: int, finished: float | None = None) -> None:
    """Record one execution of a shard by a worker: start and finish (unix s, default now), jobs, output tokens, errors."""
    con.execute("INSERT INTO shard_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (shard, worker, queue, attempt, started, time.time() if finished is None else finished, jobs, tokens, errors))
    con.commit()



def save_occupancy(con: sqlite3.Connection, worker: str, queue: str, start: float, end: float, rounds: int,
                   in_flight_sum: int, in_flight_max: int, slots: int) -> None:
    """Record one occupancy window of a worker's replica: rounds between `start` and `end` (unix s), the sequences in
    flight summed over them and at most, and the replica's slots."""
    con.execute("INSERT INTO occupancy VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (worker, queue, start, end, rounds, in_flight_sum, in_flight_max, slots))
    con.commit()
