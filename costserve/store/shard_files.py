"""Shard files: the run's jobs in shards, `RUN_DIR/shards/<shard_id>.jsonl`, one `Job.to_json` object per line.

The driver writes them when it prepares a run and reads one again each time it sends that shard
(a window at a time, run/shard_window.py): the jobs live on disk, never all in memory.
"""

from __future__ import annotations

import json
from pathlib import Path

from solver.plan import Job


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
