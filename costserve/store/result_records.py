"""Every write to `results.sqlite`: the records workers report (workers/shard_report.py), written by the driver.

Workers write no file; the driver ingests each ShardReport it reads from the broker, the partial
ones of a running shard and the final one alike. Writes are idempotent: a job's row is keyed by
custom_id (a redelivered or resent shard overwrites, never duplicates), a start or a failed
attempt is written once however many reports repeat it. Times are unix seconds, tokens output tokens.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from workers.shard_report import AttemptFailure, ShardReport


def save_result(
    con: sqlite3.Connection,
    custom_id: str,
    line: int,
    shard: str,
    output: dict[str, Any],
    attempt: int,
    tokens: int = 0,
    finished: float | None = None,
) -> None:
    """Insert or overwrite one job's output line, stamped with the time it finished (unix s, default now) and its output tokens."""
    con.execute(
        "INSERT OR REPLACE INTO results (custom_id, line, shard, output, attempt, finished, tokens) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (custom_id, line, shard, json.dumps(output), attempt, time.time() if finished is None else finished, tokens),
    )
    con.commit()


def save_occupancy(
    con: sqlite3.Connection,
    worker: str,
    queue: str,
    start: float,
    end: float,
    rounds: int,
    in_flight_sum: int,
    in_flight_max: int,
    slots: int,
) -> None:
    """Record one occupancy window of a worker's replica: rounds between `start` and `end` (unix s), the sequences in
    flight summed over them and at most, and the replica's slots."""
    con.execute(
        "INSERT INTO occupancy VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (worker, queue, start, end, rounds, in_flight_sum, in_flight_max, slots),
    )
    con.commit()


def ingest_report(con: sqlite3.Connection, report: ShardReport, queue: str) -> list[AttemptFailure]:
    """Write what a shard report adds to the store: its attempt's start (once), outputs not yet written, failed
    attempts not yet written, and, for a finished report, its shard run (under `queue`, the name the backend's
    views group shard runs by) and occupancy windows (under the broker queue the worker consumed). Returns the failed attempts that were new (the driver says so as events)."""
    shard = report["shard"]
    if (
        con.execute(
            "SELECT 1 FROM shard_starts WHERE shard = ? AND pgid = ? AND started = ?",
            (shard, report["pgid"], report["started"]),
        ).fetchone()
        is None
    ):
        con.execute(
            "INSERT INTO shard_starts VALUES (?, ?, ?, ?)", (shard, report["pgid"], report["pid"], report["started"])
        )
    have = {cid for (cid,) in con.execute("SELECT custom_id FROM results WHERE shard = ?", (shard,))}
    con.executemany(
        "INSERT OR REPLACE INTO results (custom_id, line, shard, output, attempt, finished, tokens) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (o["custom_id"], o["line"], shard, json.dumps(o["output"]), o["attempt"], o["finished"], o["tokens"])
            for o in report["outputs"]
            if o["custom_id"] not in have
        ],
    )
    seen = {a for (a,) in con.execute("SELECT attempt FROM shard_failures WHERE shard = ?", (shard,))}
    new = [f for f in report["failures"] if f["attempt"] not in seen]
    con.executemany(
        "INSERT INTO shard_failures VALUES (?, ?, ?, ?, ?, ?)",
        [(shard, f["worker"], f["attempt"], f["error"], int(f["final"]), f["at"]) for f in new],
    )
    if (
        report["finished"] is not None
        and con.execute(
            "SELECT 1 FROM shard_runs WHERE shard = ? AND worker = ? AND started = ?",
            (shard, report["worker"], report["started"]),
        ).fetchone()
        is None
    ):
        outputs = report["outputs"]
        con.execute(
            "INSERT INTO shard_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                shard,
                report["worker"],
                queue,
                report["attempt"],
                report["started"],
                report["finished"],
                len(outputs),
                sum(o["tokens"] for o in outputs),
                sum(o["output"].get("error") is not None for o in outputs),
            ),
        )
        con.executemany(
            "INSERT INTO occupancy VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(report["worker"], report["queue"] or queue, *w) for w in report["occupancy"]],
        )
    return new


def save_final_failure(con: sqlite3.Connection, shard: str, attempt: int, error: str) -> None:
    """Record the last attempt at a shard, which failed (no report came back, only its error)."""
    con.execute("INSERT INTO shard_failures VALUES (?, ?, ?, ?, ?, ?)", (shard, "", attempt, error, 1, time.time()))
