"""Celery tasks: `run_shard(run_dir, shard_id)` generates one shard's jobs on this worker's replica.

The replica is loaded on a process's first task, not at process start: Celery kills a pool
process that is not up within `worker_proc_alive_timeout`, and a replica takes longer than
that to load. It comes from `COSTSERVE_WORKER_REPLICA` (a replica or plan JSON; default one
fp32 stage) and `COSTSERVE_WORKER_MODEL` (default the embedded SmolLM2). Each result is
written as soon as its job finishes, keyed by custom_id, so a redelivered shard overwrites,
never duplicates.

A shard that fails (a stage process died, the results database is locked or full) drops the
replica, which the next attempt rebuilds, and is retried through Celery's `self.retry` with
backoff; a retry skips the jobs that already have a result. Every attempt is counted in
`shard_starts`. From attempt MAX_ATTEMPTS on, jobs run one at a time, so a job that breaks
the engine fails alone (an error line) and the rest of its shard completes.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from pathlib import Path
from typing import Any

from celery.exceptions import Reject
from celery.signals import worker_process_shutdown

from workers.celery_app import app
from workers.engine import Engine, Generation
from workers.model_source import catalog_model_name
from workers.replica import read_replica
from workers.results import backend_fingerprint, batch_output_line
from solver.plan import Job
from workers.shard_io import (connect_results, mark_shard_started, read_shard, save_result, save_shard_failure,
                              save_shard_run, shard_done_ids)

MAX_ATTEMPTS = 4  # starts of one shard (retries and re-queues alike); the last runs its jobs one at a time
RETRY_BACKOFF_S = 5.0  # delay before the first retry (s); doubles per retry, at most RETRY_BACKOFF_MAX_S
RETRY_BACKOFF_MAX_S = 60.0
RUN_ENV = "COSTSERVE_WORKER_RUN"  # the run id a worker serves; tasks of any other run are refused

_engine: Any = None  # Engine, or VllmEngine for a vllm replica


def worker_engine() -> Any:
    """This process's engine, loaded on first use: the replica's own (costserve's Engine, or vLLM for a vllm replica)."""
    global _engine
    if _engine is None:
        replica_file = os.environ.get("COSTSERVE_WORKER_REPLICA")
        replica = read_replica(Path(replica_file)) if replica_file else None
        model = os.environ.get("COSTSERVE_WORKER_MODEL")
        if replica is not None and replica.engine == "vllm":
            from workers.vllm_engine import VllmEngine

            _engine = VllmEngine(replica, model=model)
        else:
            threads = os.environ.get("COSTSERVE_WORKER_THREADS")
            _engine = Engine(replica, model=model, threads=int(threads) if threads else None)
    return _engine


def result_line(gen: Any) -> dict[str, Any]:
    """The OpenAI Batch output line of one generation of this worker's engine, named and fingerprinted."""
    if gen.error is not None:  # an error line names no model (and the engine may be gone)
        return batch_output_line(gen, "")
    name = _served_name(os.environ.get("COSTSERVE_WORKER_MODEL"))
    return batch_output_line(gen, name, fingerprint=backend_fingerprint(name, worker_engine().replica.model_dump_json()))


@functools.lru_cache(maxsize=4)
def _served_name(model: str | None) -> str:
    return catalog_model_name(model)


def drop_engine() -> None:
    """Forget this process's Engine after a failure (its stage processes killed); the next task builds a new one."""
    global _engine
    if _engine is not None:
        engine, _engine = _engine, None
        engine.abort()


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


def retry_delay_s(retries: int) -> float:
    """Seconds before retry number `retries` + 1: RETRY_BACKOFF_S doubling per retry, capped at RETRY_BACKOFF_MAX_S."""
    return min(RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_S * 2 ** retries)


def _refuse_foreign(run_dir: str) -> None:
    """Reject (without requeueing here) a task of another run than the one this worker was started for."""
    own = os.environ.get(RUN_ENV)
    if own and Path(run_dir).name != own:
        raise Reject(f"task of run {Path(run_dir).name} refused by a worker of run {own}", requeue=False)


def _one_at_a_time(jobs: list[Job], attempt: int) -> Any:
    """Generate each job alone; a job whose generation raises becomes an error Generation and the engine is rebuilt."""
    for i, job in enumerate(jobs):
        try:
            gens = list(worker_engine().stream([job]))
        except Exception as exc:  # whatever broke the engine, this job alone fails
            drop_engine()
            gens = [Generation(0, job.custom_id, "", 0, 0, "error", job.messages is not None,
                               f"failed on attempt {attempt} of {MAX_ATTEMPTS}: {type(exc).__name__}: {exc}")]
        for g in gens:
            g.index = i
            yield g


@app.task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_ATTEMPTS - 1)
def run_shard(self: Any, run_dir: str, shard_id: str, since: float = 0.0) -> dict[str, int]:
    """Generate every job of a shard file in a run directory this worker shares (local backend); returns counts.

    `since` (unix s) is when the driver queued the run: attempts are counted from then."""
    _refuse_foreign(run_dir)
    con = connect_results(Path(run_dir))
    attempt = self.request.retries + 1
    try:
        jobs = read_shard(Path(run_dir), shard_id)
        done = shard_done_ids(con, shard_id)
        todo = [j for j in jobs if j.custom_id not in done]
        if not todo:  # a second copy of a shard the driver re-sent: nothing to do, not an attempt
            return {"jobs": 0, "tokens": 0, "errors": 0}
        attempt = mark_shard_started(con, shard_id, since)
        started, tokens, errors = time.time(), 0, 0
        final = attempt >= MAX_ATTEMPTS
        for gen in (_one_at_a_time(todo, attempt) if final else worker_engine().stream(todo)):
            job = todo[gen.index]
            save_result(con, job.custom_id, job.line, shard_id, result_line(gen), attempt, gen.completion_tokens)
            tokens += gen.completion_tokens
            errors += gen.error is not None
        queue = (self.request.delivery_info or {}).get("routing_key") or ""
        save_shard_run(con, shard_id, _worker_id(self), queue, attempt, started, len(todo), tokens, errors)
        return {"jobs": len(todo), "tokens": tokens, "errors": errors}
    except Exception as exc:  # any failure of the engine or the database: rebuild, back off, retry
        drop_engine()
        final = attempt >= MAX_ATTEMPTS
        _record_failure(con, shard_id, _worker_id(self), attempt, exc, final)
        if final:
            raise
        raise self.retry(exc=exc, countdown=retry_delay_s(self.request.retries))
    finally:
        con.close()


def _record_failure(con: Any, shard: str, worker: str, attempt: int, exc: BaseException, final: bool) -> None:
    """Record a failed attempt for the driver, if the database takes it (it may be what failed)."""
    import sqlite3

    try:
        save_shard_failure(con, shard, worker, attempt, f"{type(exc).__name__}: {exc}".splitlines()[0][:300], final)
    except sqlite3.Error:
        pass  # the driver's watchdog notices the shard made no progress


@app.task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_ATTEMPTS - 1)
def run_jobs(self: Any, shard_id: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Generate a shard sent inline (remote workers share no run directory); the outputs go back as the task result.

    Returns {shard, worker, queue, attempt, started, finished, outputs: [{custom_id, line, output, tokens, finished}]};
    times in unix s. The driver writes them to the run store.
    """
    parsed = [Job.from_json(j) for j in jobs]
    started = time.time()
    outputs = []
    try:
        for gen in worker_engine().stream(parsed):
            job = parsed[gen.index]
            outputs.append({"custom_id": job.custom_id, "line": job.line, "output": result_line(gen),
                            "tokens": gen.completion_tokens, "finished": time.time()})
    except Exception as exc:  # a broken replica: rebuild it on the retry (the driver counts attempts past Celery's)
        drop_engine()
        raise self.retry(exc=exc, countdown=retry_delay_s(self.request.retries))
    return {"shard": shard_id, "worker": _worker_id(self), "queue": (self.request.delivery_info or {}).get("routing_key") or "",
            "attempt": self.request.retries + 1, "started": started, "finished": time.time(), "outputs": outputs}
