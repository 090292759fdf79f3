"""Celery tasks: `run_shard(run_dir, shard_id)` generates one shard's jobs on this worker's replica.

The replica is loaded once per worker process (`worker_process_init`), from
`COSTSERVE_WORKER_REPLICA` (a replica or plan JSON; default one fp32 stage) and
`COSTSERVE_WORKER_MODEL` (default the embedded SmolLM2). Each result is written as soon as
its job finishes, keyed by custom_id, so a redelivered shard overwrites, never duplicates.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown

from workers.celery_app import app
from workers.engine import Engine
from workers.model_source import model_name
from workers.replica import read_replica
from workers.results import batch_output_line
from solver.plan import Job
from workers.shard_io import connect_results, mark_shard_started, read_shard, save_result, save_shard_run

_engine: Engine | None = None


def worker_engine() -> Engine:
    """This process's Engine, loaded on first use."""
    global _engine
    if _engine is None:
        replica_file = os.environ.get("COSTSERVE_WORKER_REPLICA")
        replica = read_replica(Path(replica_file)) if replica_file else None
        threads = os.environ.get("COSTSERVE_WORKER_THREADS")
        _engine = Engine(replica, model=os.environ.get("COSTSERVE_WORKER_MODEL"), threads=int(threads) if threads else None)
    return _engine


@worker_process_init.connect
def _load_replica(**_: Any) -> None:
    worker_engine()


@worker_process_shutdown.connect
def _close_replica(**_: Any) -> None:
    if _engine is not None:
        try:
            _engine.close()
        except RuntimeError:
            pass  # stopping a worker signals its whole process group: the pipeline stages may be gone already


def _worker_id(task: Any) -> str:
    """`host/pid` of the process running a task (the live view groups shards by it)."""
    return f"{task.request.hostname or socket.gethostname()}/{os.getpid()}"


@app.task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def run_shard(self: Any, run_dir: str, shard_id: str) -> dict[str, int]:
    """Generate every job of a shard file in a run directory this worker shares (local backend); returns counts."""
    jobs = read_shard(Path(run_dir), shard_id)
    engine = worker_engine()
    name = model_name(os.environ.get("COSTSERVE_WORKER_MODEL"))
    con = connect_results(Path(run_dir))
    tokens = errors = 0
    started = time.time()
    attempt = self.request.retries + 1
    mark_shard_started(con, shard_id)
    try:
        for gen in engine.stream(jobs):
            job = jobs[gen.index]
            save_result(con, job.custom_id, job.line, shard_id, batch_output_line(gen, name), attempt, gen.completion_tokens)
            tokens += gen.completion_tokens
            errors += gen.error is not None
        queue = (self.request.delivery_info or {}).get("routing_key") or ""
        save_shard_run(con, shard_id, _worker_id(self), queue, attempt, started, len(jobs), tokens, errors)
    finally:
        con.close()
    return {"jobs": len(jobs), "tokens": tokens, "errors": errors}


@app.task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def run_jobs(self: Any, shard_id: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Generate a shard sent inline (remote workers share no run directory); the outputs go back as the task result.

    Returns {shard, worker, queue, attempt, started, finished, outputs: [{custom_id, line, output, tokens, finished}]};
    times in unix s. The driver writes them to the run store.
    """
    parsed = [Job.from_json(j) for j in jobs]
    engine = worker_engine()
    name = model_name(os.environ.get("COSTSERVE_WORKER_MODEL"))
    started = time.time()
    outputs = []
    for gen in engine.stream(parsed):
        job = parsed[gen.index]
        outputs.append({"custom_id": job.custom_id, "line": job.line, "output": batch_output_line(gen, name),
                        "tokens": gen.completion_tokens, "finished": time.time()})
    return {"shard": shard_id, "worker": _worker_id(self), "queue": (self.request.delivery_info or {}).get("routing_key") or "",
            "attempt": self.request.retries + 1, "started": started, "finished": time.time(), "outputs": outputs}
