"""`results.sqlite`: one row per finished job and one per shard execution, owned by the run store.

The driver creates the schema and is its only writer (store/result_records.py: the shard reports
workers send back through the broker), keyed by custom_id so a redelivered shard overwrites its
rows instead of adding new ones. Everything else reads it through the typed queries below. Times are unix seconds, tokens are output tokens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

RESULTS_FILE = "results.sqlite"  # in the run directory
LOCK_TIMEOUT_S = 60  # s a reader waits for a writer's lock
FAILED_MARK = '"error": {'  # in the output line of a job that failed (workers/results.py: batch_output_line)
RESULT_TABLES = ("results", "shard_starts", "shard_runs", "shard_failures", "occupancy")


def results_db(run_dir: Path) -> sqlite3.Connection:
    """The driver's connection to the run's results database, its tables created on first use, in WAL mode so several
    workers can write while it reads; it outwaits another process's lock (store/patient.py)."""
    from costserve.store.patient import patient_connect

    con = patient_connect(Path(run_dir) / RESULTS_FILE)
    con.execute(
        "CREATE TABLE IF NOT EXISTS results (custom_id TEXT PRIMARY KEY, line INTEGER, shard TEXT, output TEXT, "
        "attempt INTEGER, finished REAL, tokens INTEGER)"
    )
    con.execute("CREATE INDEX IF NOT EXISTS results_by_shard ON results (shard)")  # a window's progress, per poll
    con.execute("CREATE TABLE IF NOT EXISTS shard_starts (shard TEXT, pgid INTEGER, pid INTEGER, started REAL)")
    con.execute(
        "CREATE TABLE IF NOT EXISTS shard_runs (shard TEXT, worker TEXT, queue TEXT, attempt INTEGER, started REAL, "
        "finished REAL, jobs INTEGER, tokens INTEGER, errors INTEGER)"
    )
    con.execute(
        "CREATE TABLE IF NOT EXISTS shard_failures (shard TEXT, worker TEXT, attempt INTEGER, error TEXT, final INTEGER, "
        "at REAL)"
    )
    # sequences in flight per round of each worker's replica, in windows of a few seconds (workers/occupancy.py)
    con.execute(
        "CREATE TABLE IF NOT EXISTS occupancy (worker TEXT, queue TEXT, start REAL, end REAL, rounds INTEGER, "
        "in_flight_sum INTEGER, in_flight_max INTEGER, slots INTEGER)"
    )
    con.commit()
    return con


def results_rows(run_dir: Path, table: str) -> int:
    """Rows of one table of a run's results.sqlite, read without creating anything (0 before a worker wrote one)."""
    if table not in RESULT_TABLES:
        raise ValueError(f"not a results table: {table}")
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return 0
    con = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S)
    try:
        return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:  # the file exists but its tables are not created yet
        return 0
    finally:
        con.close()


def progress(con: sqlite3.Connection) -> tuple[int, int]:
    """(jobs with a result, their output tokens)."""
    done, tokens = con.execute("SELECT COUNT(*), COALESCE(SUM(tokens), 0) FROM results").fetchone()
    return int(done), int(tokens)


def done_ids(con: sqlite3.Connection) -> set[str]:
    """custom_ids that have a result."""
    return {cid for (cid,) in con.execute("SELECT custom_id FROM results")}


def outputs_in_order(con: sqlite3.Connection) -> Iterator[tuple[str, bool]]:
    """Every output line (OpenAI Batch JSON) in input-file order, with whether it is a failed request (its `error` is
    set: it belongs in the error file)."""
    import json

    for (output,) in con.execute("SELECT output FROM results ORDER BY line"):
        yield output, json.loads(output)["error"] is not None


CARRIED_SHARD = "carried"  # the shard name of results carried over from an earlier submit (--resume-from)


def carry_results(con: sqlite3.Connection, rows: Iterator[tuple[str, int, str]]) -> int:
    """Insert (custom_id, input line, output line) results an earlier submit produced, in one transaction, as attempt 0
    of the `carried` shard with no output tokens (this run did not generate them); returns how many."""
    import time

    now = time.time()
    with con:
        cur = con.executemany(
            "INSERT OR REPLACE INTO results (custom_id, line, shard, output, attempt, finished, tokens) "
            "VALUES (?, ?, ?, ?, 0, ?, 0)",
            ((cid, line, CARRIED_SHARD, out, now) for cid, line, out in rows),
        )
    return cur.rowcount


def results_per_shard(con: sqlite3.Connection) -> dict[str, int]:
    """Jobs with a result, per shard."""
    return {sid: n for sid, n in con.execute("SELECT shard, COUNT(*) FROM results GROUP BY shard")}


def shards_started(con: sqlite3.Connection) -> set[str]:
    """Shards some worker started."""
    return {sid for (sid,) in con.execute("SELECT DISTINCT shard FROM shard_starts")}


def shards_started_by(con: sqlite3.Connection, pgid: int) -> set[str]:
    """Shards a worker (process group `pgid`) started."""
    return {sid for (sid,) in con.execute("SELECT shard FROM shard_starts WHERE pgid = ?", (pgid,))}


def worker_activity(con: sqlite3.Connection) -> dict[int, tuple[float, ...]]:
    """Per worker process group: (its last shard start, the last result of a shard it started), unix s."""
    starts = {pgid: t for pgid, t in con.execute("SELECT pgid, MAX(started) FROM shard_starts GROUP BY pgid")}
    results = {
        pgid: t
        for pgid, t in con.execute(
            "SELECT s.pgid, MAX(r.finished) FROM results r JOIN shard_starts s ON r.shard = s.shard GROUP BY s.pgid"
        )
    }
    return {pgid: (t,) + ((results[pgid],) if results.get(pgid) is not None else ()) for pgid, t in starts.items()}


def worker_progress(con: sqlite3.Connection) -> dict[int, tuple[int, int, int, float | None]]:
    """Per worker process group, live: (shards started, jobs with a result, their output tokens, last result unix s).

    A shard's results count for the worker that started it last (a re-queued shard moves with its new worker)."""
    owner = {
        shard: pgid
        for shard, pgid in con.execute(
            "SELECT shard, pgid FROM shard_starts WHERE rowid IN (SELECT MAX(rowid) FROM shard_starts GROUP BY shard)"
        )
    }
    out: dict[int, list] = {}
    for pgid, n in con.execute("SELECT pgid, COUNT(DISTINCT shard) FROM shard_starts GROUP BY pgid"):
        out[pgid] = [n, 0, 0, None]
    for shard, jobs, tokens, last in con.execute(
        "SELECT shard, COUNT(*), COALESCE(SUM(tokens), 0), MAX(finished) FROM results GROUP BY shard"
    ):
        if shard in owner and owner[shard] in out:
            row = out[owner[shard]]
            row[1], row[2], row[3] = row[1] + jobs, row[2] + tokens, max(row[3] or 0.0, last or 0.0)
    return {pgid: (n, jobs, tokens, last) for pgid, (n, jobs, tokens, last) in out.items()}


def shards_run(con: sqlite3.Connection) -> set[str]:
    """Shards some worker finished running."""
    return {sid for (sid,) in con.execute("SELECT DISTINCT shard FROM shard_runs")}


def queue_run_stats(con: sqlite3.Connection) -> dict[str, tuple[int, int, float | None]]:
    """Per queue (fleet group): (shards run, output tokens, last finish unix s)."""
    return {
        key: (n, tok or 0, last)
        for key, n, tok, last in con.execute(
            "SELECT queue, COUNT(*), SUM(tokens), MAX(finished) FROM shard_runs GROUP BY queue"
        )
    }


def result_frames(con: sqlite3.Connection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per shard: shard, jobs with a result, their tokens, failed, retried, last finished unix s; shard runs: shard,
    worker, queue, started, finished, jobs, tokens). Aggregated in SQLite: a row per shard, never one per job, so the
    report of a batch of millions fits in memory."""
    import pandas as pd

    results = pd.read_sql_query(
        "SELECT shard, COUNT(*) AS jobs, COALESCE(SUM(tokens), 0) AS tokens, "
        "SUM(instr(output, ?) > 0) AS failed, SUM(attempt > 1) AS retried, MAX(finished) AS finished "
        "FROM results GROUP BY shard",
        con,
        params=(FAILED_MARK,),
    )
    runs = pd.read_sql_query("SELECT shard, worker, queue, started, finished, jobs, tokens FROM shard_runs", con)
    return results, runs


def tokens_per_second(con: sqlite3.Connection, since: float) -> pd.DataFrame:
    """Output tokens of the results finished in each whole second after `since` (unix s): columns t (s), tokens."""
    import pandas as pd

    return pd.read_sql_query(
        "SELECT CAST(finished - ? AS INTEGER) AS t, SUM(tokens) AS tokens FROM results GROUP BY t ORDER BY t",
        con,
        params=(since,),
    )
