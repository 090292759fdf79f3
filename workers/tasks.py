"""The Celery task: `run_shard(run_id, shard_id, jobs)` generates one shard's jobs on this worker's replica.

One task for every backend. A shard travels inline (the driver sends a window of shards at a
time, so the broker never holds the whole batch) and its record comes back as the task's state
and result (workers/shard_report.py): workers write no file, the driver's run store writes
every result. A worker holds several shards at once (Celery's threads pool, `costserve worker`):
each task thread hands its shard's jobs to the process's one running engine (workers/feed.py)
and acknowledges the shard (late ack) only when its report is the task result, so the replica
stays at its planned batch across shard boundaries while a killed worker's shards are still
redelivered.

The replica is loaded on the first task, not at process start (a replica takes a while to load).
It comes from `COSTSERVE_WORKER_REPLICA` (a replica or plan JSON; default one fp32 stage) and
`COSTSERVE_WORKER_MODEL` (default the embedded SmolLM2).

A shard that fails (a stage process died) drops the replica, which the next attempt rebuilds,
and is retried through Celery's `self.retry` with backoff; the retry carries the outputs of the
jobs already finished and runs only the rest. An attempt is the driver's sends of the shard
plus Celery's retries. A crash of the engine fails every shard with a job in it, and each counts
the attempt. From attempt MAX_ATTEMPTS on, a shard's jobs run one at a time on a drained
replica, so a job that breaks the engine fails alone (an error line) and the rest of its shard
completes.
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

from solver.plan import Job
from workers.celery_app import app
from workers.engine import Engine
from workers.feed import EngineFeed
from workers.model_source import catalog_model_name
from workers.occupancy import OccupancyWindow
from workers.replica import read_replica
from workers.results import backend_fingerprint, batch_output_line
from workers.shard_report import PROGRESS, AttemptFailure, JobOutput, ShardReport

MAX_ATTEMPTS = 4  # starts of one shard (retries and re-queues alike); the last runs its jobs one at a time
RETRY_BACKOFF_S = 5.0  # delay before the first retry (s); doubles per retry, at most RETRY_BACKOFF_MAX_S
RETRY_BACKOFF_MAX_S = 60.0
PROGRESS_S = 1.0  # s between a running shard's published reports (the driver's heartbeat and partial results)
RUN_ENV = "COSTSERVE_WORKER_RUN"  # the run id a worker serves; tasks of any other run are refused

_engine: Any = None  # Engine, or VllmEngine for a vllm replica
_replica_json: str = ""  # the loaded replica, for results' fingerprints (kept when a broken engine is dropped)
_feed: EngineFeed | None = None
_occupancy_out: list[OccupancyWindow] = []  # this replica's windows, returned with the next finished shard
_windows_lock = threading.Lock()
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
    """Keep an occupancy window of this worker's replica: it travels back with the next shard report."""
    with _windows_lock:
        _occupancy_out.append(window)


def _take_windows() -> list[OccupancyWindow]:
    """The windows kept since the last report (task threads finish shards at once: each window goes to one report)."""
    with _windows_lock:
        taken = list(_occupancy_out)
        _occupancy_out.clear()
    return taken


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
    return min(RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_S * 2**retries)


def _refuse_foreign(run_id: str) -> None:
    """Reject (without requeueing here) a task of another run than the one this worker was started for."""
    own = os.environ.get(RUN_ENV)
    if own and run_id != own:
        raise Reject(f"task of run {run_id} refused by a worker of run {own}", requeue=False)


def _report(
    task: Any, shard_id: str, attempt: int, outputs: list[JobOutput], failures: list[AttemptFailure]
) -> ShardReport:
    return ShardReport(
        shard=shard_id,
        worker=_worker_id(task),
        pid=os.getpid(),
        pgid=os.getpgid(0),
        attempt=attempt,
        started=time.time(),
        queue=(task.request.delivery_info or {}).get("routing_key") or "",
        finished=None,
        outputs=outputs,
        failures=failures,
        occupancy=[],
    )


def _publish(task: Any, report: ShardReport) -> None:
    """The report so far as the task's PROGRESS state (in eager mode Celery stores no state either: nothing to do)."""
    if not task.request.is_eager:
        task.update_state(state=PROGRESS, meta=report)


@app.task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_ATTEMPTS - 1)
def run_shard(
    self: Any,
    run_id: str,
    shard_id: str,
    jobs: list[dict[str, Any]],
    sent: int = 1,
    carried: list[JobOutput] | None = None,
    failures: list[AttemptFailure] | None = None,
) -> ShardReport:
    """Generate the jobs of a shard (`Job.to_json` objects) of run `run_id`; returns its ShardReport.

    `sent`: how many times the driver has sent this shard (1 the first time); `carried`/`failures`: the outputs and
    failed attempts of earlier attempts (a retry passes them on). The report is published every PROGRESS_S (s)."""
    _refuse_foreign(run_id)
    attempt = sent + self.request.retries
    final = attempt >= MAX_ATTEMPTS
    report = _report(self, shard_id, attempt, list(carried or []), list(failures or []))
    done = {o["custom_id"] for o in report["outputs"]}
    todo = [job for job in map(Job.from_json, jobs) if job.custom_id not in done]
    _publish(self, report)
    published = time.monotonic()
    try:
        for gen in worker_feed().run(todo, alone=final, note=f"failed on attempt {attempt} of {MAX_ATTEMPTS}: "):
            job = todo[gen.index]
            report["outputs"].append(
                JobOutput(
                    custom_id=job.custom_id,
                    line=job.line,
                    output=result_line(gen),
                    tokens=gen.completion_tokens,
                    attempt=attempt,
                    finished=gen.finished or time.time(),
                )
            )
            if time.monotonic() - published >= PROGRESS_S:
                _publish(self, report)
                published = time.monotonic()
    except Exception as exc:  # a failure of the engine (the feed rebuilds it): back off, retry with what is done
        report["failures"].append(
            AttemptFailure(
                attempt=attempt,
                worker=_worker_id(self),
                final=final,
                at=time.time(),
                error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
            )
        )
        if final:
            raise
        raise self.retry(
            exc=exc,
            countdown=retry_delay_s(self.request.retries),
            kwargs={"sent": sent, "carried": report["outputs"], "failures": report["failures"]},
        ) from exc
    report["occupancy"] = [
        [w.start, w.end, w.rounds, w.in_flight_sum, w.in_flight_max, w.slots] for w in _take_windows()
    ]
    report["finished"] = time.time()
    return report
