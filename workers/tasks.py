"""Celery tasks: `run_shard(run_dir, shard_id)` generates one shard's jobs on this worker's replica.

A worker holds several shards at once (Celery's threads pool, `costserve worker`): each task
thread hands its shard's jobs to the process's one running engine (workers/feed.py) and
acknowledges the shard (late ack) only when all its results are written, so the replica stays
at its planned batch across shard boundaries while a killed worker's shards are still redelivered.

The replica is loaded on the first task, not at process start (a replica takes a while to load). It comes from `COSTSERVE_WORKER_REPLICA` (a replica or plan JSON; default one
fp32 stage) and `COSTSERVE_WORKER_MODEL` (default the embedded SmolLM2). Each result is
written as soon as its job finishes, keyed by custom_id, so a redelivered shard overwrites,
never duplicates.

A shard that fails (a stage process died, the results database is locked or full) drops the
replica, which the next attempt rebuilds, and is retried through Celery's `self.retry` with
backoff; a retry skips the jobs that already have a result. Every attempt is counted in
`shard_starts`. A crash of the engine fails every shard with a job in it, and each counts the
attempt. From attempt MAX_ATTEMPTS on, a shard's jobs run one at a time on a drained replica,
so a job that breaks the engine fails alone (an error line) and the rest of its shard completes.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from celery.exceptions import Reject
from celery.signals import worker_process_shutdown, worker_shutdown

from workers.celery_app import app
from workers.occupancy import OccupancyWindow
from workers.engine import Engine
from workers.feed import EngineFeed
from workers.model_source import catalog_model_name
from workers.replica import read_replica
from workers.results import backend_fingerprint, batch_output_line
from solver.plan import Job
from workers.shard_io import (connect_results, mark_shard_started, read_shard, save_occupancy, save_result,
                              save_shard_failure, save_shard_run, shard_done_ids)

MAX_ATTEMPTS = 4  # starts of one shard (retries and re-queues alike); the last runs its jobs one at a time
RETRY_BACKOFF_S = 5.0  # delay before the first retry (s); doubles per retry, at most RETRY_BACKOFF_MAX_S
RETRY_BACKOFF_MAX_S = 60.0
RUN_ENV = "COSTSERVE_WORKER_RUN"  # the run id a worker serves; tasks of any other run are refused

_engine: Any = None  # Engine, or VllmEngine for a vllm replica
_replica_json: str = ""  # the loaded replica, for results' fingerprints (kept when a broken engine is dropped)
_feed: EngineFeed | None = None
_occupancy_to: tuple[str, str, str] | None = None  # (run dir, worker, queue) of the latest shard: where windows go
_occupancy_out: list[OccupancyWindow] = []  # a remote worker's windows, returned with its next finished shard
_build_lock = threading.Lock()  # task threads start together: one feed, one engine (two would each start stages)


def worker_engine() -> Any:
    """This process's engine, loaded on first use: the replica's own (costserve's Engine, or vLLM for a vllm replica)."""
    with _build_lock:
        return _engine if _engine is not None else _load_engine()


def _load_engine() -> Any:
    global _engine, _replica_json
    replica_file = os.environ.get("COSTSERVE_WORKER_REPLICA")
    replica = read_replica(Path(replica_file)) if replica_file else None
    model = os.environ.get("COSTSERVE_WORKER_MODEL")
    if replica is not None and replica.engine == "vllm":
        from workers.vllm_engine import VllmEngine

        _engine = VllmEngine(replica, model=model)
    else:
        threads = os.environ.get("COSTSERVE_WORKER_THREADS")
        _engine = Engine(replica, model=model, threads=int(threads) if threads else None)
    _replica_json = _engine.replica.model_dump_json()
    return _engine


def worker_feed() -> EngineFeed:
    """This process's engine feed: one engine thread serving every shard the worker holds."""
    global _feed
    with _build_lock:
        if _feed is None:
            _feed = EngineFeed(worker_engine, _drop, _save_window)
        return _feed


def _drop(engine: Any) -> None:
    """Forget a broken engine (the next job loads a new one) and tear it down without waiting on it."""
    global _engine
    if _engine is engine:
        _engine = None
    engine.abort()


def _save_window(window: OccupancyWindow) -> None:
    """Write an occupancy window of this worker's replica to the run's results database (best effort: a full or
    locked database must not stop the engine; the results themselves are what counts)."""
    import sqlite3

    if _occupancy_to is None:  # a remote worker (run_jobs): the windows travel back with a task result
        _occupancy_out.append(window)
        return
    run_dir, worker, queue = _occupancy_to
    try:
        con = connect_results(Path(run_dir))
        try:
            save_occupancy(con, worker, queue, window.start, window.end, window.rounds, window.in_flight_sum,
                           window.in_flight_max, window.slots)
        finally:
            con.close()
    except sqlite3.Error:
        pass


def result_line(gen: Any) -> dict[str, Any]:
    """The OpenAI Batch output line of one generation of this worker's engine, named and fingerprinted."""
    if gen.error is not None:  # an error line names no model (and the engine may be gone)
        return batch_output_line(gen, "")
    name = _served_name(os.environ.get("COSTSERVE_WORKER_MODEL"))
    return batch_output_line(gen, name, fingerprint=backend_fingerprint(name, _replica_json))


@functools.lru_cache(maxsize=4)
def _served_name(model: str | None) -> str:
    return catalog_model_name(model)


@worker_process_shutdown.connect
@worker_shutdown.connect
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


@app.task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_ATTEMPTS - 1)
def run_shard(self: Any, run_dir: str, shard_id: str, since: float = 0.0) -> dict[str, int]:
    """Generate every job of a shard file in a run directory this worker shares (local backend); returns counts.

    `since` (unix s) is when the driver queued the run: attempts are counted from then."""
    global _occupancy_to
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
        queue = (self.request.delivery_info or {}).get("routing_key") or ""
        _occupancy_to = (run_dir, _worker_id(self), queue)
        final = attempt >= MAX_ATTEMPTS
        for gen in worker_feed().run(todo, alone=final, note=f"failed on attempt {attempt} of {MAX_ATTEMPTS}: "):
            job = todo[gen.index]
            save_result(con, job.custom_id, job.line, shard_id, result_line(gen), attempt, gen.completion_tokens)
            tokens += gen.completion_tokens
            errors += gen.error is not None
        save_shard_run(con, shard_id, _worker_id(self), queue, attempt, started, len(todo), tokens, errors)
        return {"jobs": len(todo), "tokens": tokens, "errors": errors}
    except Exception as exc:  # a failure of the engine (the feed rebuilds it) or of the database: back off, retry
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

    Returns {shard, worker, queue, attempt, started, finished, outputs: [{custom_id, line, output, tokens, finished}],
    occupancy: [[start, end, rounds, in_flight_sum, in_flight_max, slots]] (this worker's windows since its last
    result)}; times in unix s. The driver writes them to the run store.
    """
    parsed = [Job.from_json(j) for j in jobs]
    started = time.time()
    attempt = self.request.retries + 1
    final = attempt >= MAX_ATTEMPTS  # the same policy as run_shard: the last attempt runs its jobs one at a time
    outputs = []
    try:
        for gen in worker_feed().run(parsed, alone=final, note=f"failed on attempt {attempt} of {MAX_ATTEMPTS}: "):
            job = parsed[gen.index]
            outputs.append({"custom_id": job.custom_id, "line": job.line, "output": result_line(gen),
                            "tokens": gen.completion_tokens, "finished": time.time()})
    except Exception as exc:  # a broken replica (the feed rebuilds it): retry; after the last attempt the driver stops
        if final:
            raise
        raise self.retry(exc=exc, countdown=retry_delay_s(self.request.retries))
    windows = [_occupancy_out.pop(0) for _ in range(len(_occupancy_out))]
    return {"shard": shard_id, "worker": _worker_id(self), "queue": (self.request.delivery_info or {}).get("routing_key") or "",
            "attempt": attempt, "started": started, "finished": time.time(), "outputs": outputs,
            "occupancy": [[w.start, w.end, w.rounds, w.in_flight_sum, w.in_flight_max, w.slots] for w in windows]}
