"""Shard files and the results database a worker writes, inside a run directory.

A shard is `RUN_DIR/shards/<shard_id>.jsonl`, one normalised job per line
(`custom_id, line, prompt | messages, max_tokens, temperature, top_p, stop, seed`), written by
the driver. Results go to `RUN_DIR/results.sqlite`, keyed by `custom_id`: a redelivered
shard overwrites its rows instead of adding new ones.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ShardJob:
    """One job as a worker reads it (the engine's JobLike)."""

    custom_id: str
    line: int
    max_tokens: int
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None

    def estimated_input_tokens(self) -> int:
        """Prompt length estimate (tokens, chars/4), as the job reader makes it without a tokenizer."""
        text = self.prompt if self.prompt is not None else "".join(content for _, content in (self.messages or ()))
        return max(1, len(text) // 4)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardJob:
        msgs = data.get("messages")
        return cls(**{**data, "messages": tuple(map(tuple, msgs)) if msgs is not None else None, "stop": tuple(data.get("stop", ()))})


def shard_path(run_dir: Path, shard_id: str) -> Path:
    return Path(run_dir) / "shards" / f"{shard_id}.jsonl"


def shard_job_dict(job: Any) -> dict[str, Any]:
    """A job (anything with ShardJob's fields) as the JSON object shard files and inline shards carry."""
    return {k: getattr(job, k) for k in ShardJob.__dataclass_fields__}


def write_shard(run_dir: Path, shard_id: str, jobs: list[Any]) -> Path:
    """Write jobs (anything with ShardJob's fields) as a shard file; returns its path."""
    path = shard_path(run_dir, shard_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for j in jobs:
            f.write(json.dumps(shard_job_dict(j)) + "\n")
    return path


def read_shard(run_dir: Path, shard_id: str) -> list[ShardJob]:
    with shard_path(run_dir, shard_id).open() as f:
        return [ShardJob.from_json(json.loads(line)) for line in f if line.strip()]


def results_db(run_dir: Path) -> sqlite3.Connection:
    """The run's results database (created on first use), in WAL mode so several workers can write."""
    con = sqlite3.connect(Path(run_dir) / "results.sqlite", timeout=60)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS results (custom_id TEXT PRIMARY KEY, line INTEGER, shard TEXT, output TEXT, "
                "attempt INTEGER, finished REAL, tokens INTEGER)")
    con.execute("CREATE TABLE IF NOT EXISTS shard_starts (shard TEXT, pgid INTEGER, pid INTEGER, started REAL)")
    con.execute("CREATE TABLE IF NOT EXISTS shard_runs (shard TEXT, worker TEXT, queue TEXT, attempt INTEGER, started REAL, "
                "finished REAL, jobs INTEGER, tokens INTEGER, errors INTEGER)")
    return con


def save_result(con: sqlite3.Connection, custom_id: str, line: int, shard: str, output: dict[str, Any], attempt: int,
                tokens: int = 0, finished: float | None = None) -> None:
    """Insert or overwrite one job's output line, stamped with the time it finished (unix s, default now) and its output tokens."""
    con.execute("INSERT OR REPLACE INTO results (custom_id, line, shard, output, attempt, finished, tokens) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (custom_id, line, shard, json.dumps(output), attempt, time.time() if finished is None else finished, tokens))
    con.commit()


def mark_shard_started(con: sqlite3.Connection, shard: str) -> None:
    """Record that this process (and its process group: one `costserve worker`) started a shard, so the driver can
    re-queue it if that worker dies before finishing."""
    import os

    con.execute("INSERT INTO shard_starts VALUES (?, ?, ?, ?)", (shard, os.getpgid(0), os.getpid(), time.time()))
    con.commit()


def save_shard_run(con: sqlite3.Connection, shard: str, worker: str, queue: str, attempt: int, started: float,
                   jobs: int, tokens: int, errors: int, finished: float | None = None) -> None:
    """Record one execution of a shard by a worker: start and finish (unix s, default now), jobs, output tokens, errors."""
    con.execute("INSERT INTO shard_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (shard, worker, queue, attempt, started, time.time() if finished is None else finished, jobs, tokens, errors))
    con.commit()

