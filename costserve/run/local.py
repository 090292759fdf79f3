"""Executing a prepared local run: broker, worker processes, queued shards, recovery, results, report.

`submit` prepares a run (plan, shards, `local-run.json`) and calls `execute_local`; `resume`
calls it again on a run whose driver died. Either way only shards the run store does not
have as done are queued, and results are keyed by custom_id, so nothing runs twice into
the output and nothing is lost.

A worker process that dies mid-shard (killed, out of memory) is noticed by the driver: the
shards it had started and not finished are queued again and a replacement worker is started
(at most MAX_REPLACEMENTS per run). Redis would also redeliver them after the visibility
timeout (acks_late), but that is an hour; this takes one poll.
"""

from __future__ import annotations

import sqlite3
import subprocess
from typing import Any

from rich.console import RenderableType

from costserve.errors import BrokerError, RunStateError
from costserve.run.end import finish_run
from costserve.run.follow import follow_or_stop, worker_table
from costserve.store.results import shards_run, shards_started_by
from costserve.store.runs import RunStore

QUEUE = "local"
RUN_SHARD = "workers.tasks.run_shard"
MAX_REPLACEMENTS = 3


class LocalWorkers:
    """Worker processes on this machine (they write results.sqlite themselves), replaced when one dies."""

    def __init__(self, store: RunStore, results: sqlite3.Connection, start: Any, app: Any, count: int) -> None:
        self.store, self.results, self.start, self.app = store, results, start, app
        self.procs: list[subprocess.Popen[bytes]] = []
        self.replacements = 0
        self.may_add_capacity = True  # the budget guard turns this off while the projected spend is over budget
        for _ in range(count):
            self._spawn()

    def _spawn(self) -> None:
        proc = self.start()
        self.procs.append(proc)
        self.store.event("worker started", str(proc.pid))

    def poll(self) -> None:
        for proc in [p for p in self.procs if p.poll() is not None]:
            self.procs.remove(proc)
            done = {sid for sid, *_ in self.store.shards("done")}
            lost = sorted(shards_started_by(self.results, proc.pid) - done - shards_run(self.results))
            self.store.event("worker lost", f"pid {proc.pid} exit {proc.returncode}; re-queued {', '.join(lost) or 'nothing'}")
            for sid in lost:
                self.app.send_task(RUN_SHARD, args=(str(self.store.dir), sid), queue=QUEUE)
            if self.replacements < MAX_REPLACEMENTS and self.may_add_capacity:
                self.replacements += 1
                self._spawn()
            elif not self.may_add_capacity:
                self.store.event("no replacement", "the projected spend is over the budget")

    def alive(self) -> bool:
        # a worker that died since the last poll() is replaced by the next one, while replacements remain
        return any(p.poll() is None for p in self.procs) or (
            bool(self.procs) and self.replacements < MAX_REPLACEMENTS and self.may_add_capacity)

    def status(self, now: float) -> RenderableType:
        return worker_table(self.results, self.procs, now)

    def gone(self) -> str:
        return (f"every worker exited before the run finished ({self.replacements} replaced); see "
                f"{self.store.dir / 'workers.log'} (run {self.store.id}; `costserve resume {self.store.id}` continues it)")

    def stop(self) -> None:
        from deploy.local import stop_worker

        for p in self.procs:
            stop_worker(p)


def redact_url(url: str) -> str:
    """A broker URL without its password, for output (kombu's own redaction)."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url, mask="***"))


def require_broker(url: str | None, consequence: str = "") -> None:
    """Raise BrokerError (password redacted, then `consequence`) when an external broker does not answer."""
    from deploy.local import broker_problem

    if url is not None and (problem := broker_problem(url)) is not None:
        raise BrokerError(f"--broker {redact_url(url)}: {problem}{consequence}")


def execute_local(store: RunStore, broker: str | None, budget: float | None = None) -> int:
    """Run every shard of `store` not yet done on local workers; write results and the report; returns the exit code.

    `budget` ($, default the request's) is enforced live by a BudgetGuard.
    """
    from costserve.store.results import results_db
    from deploy.local import EmbeddedRedis, start_worker
    from workers.celery_app import make_app
    from workers.model_source import resolve_model_dir

    request = store.request()
    if request is None:
        raise RunStateError(f"run {store.id} has no request.json (a run from an older costserve); submit it again")
    budget = budget if budget is not None else request.budget
    model_dir = resolve_model_dir(request.model)
    plan = store.plan()
    price = plan.groups[0].price_per_hour if plan is not None else 0.0
    results = results_db(store.dir)
    total = store.input_info()["jobs"]
    store.mark_finished_shards(results)
    todo = [sid for sid, *_ in store.shards("queued")]
    redis = EmbeddedRedis(store.dir) if broker is None else None
    url = redis.url if redis is not None else str(broker)
    if redis is not None:
        store.event("broker pid", str(redis.pid))
    store.event("broker", redact_url(url))
    log = store.dir / "workers.log"
    replica_file = store.dir / f"replica-{QUEUE}.json"
    app = make_app(url)
    fleet = LocalWorkers(store, results, lambda: start_worker(store.dir, QUEUE, url, replica_file, str(model_dir), log),
                         app, request.workers)
    store.fleet_up(QUEUE, 0, 1, price)
    stopped: str | None = None
    try:
        for sid in todo:
            app.send_task(RUN_SHARD, args=(str(store.dir), sid), queue=QUEUE)
        store.event("queued", f"{len(todo)} shards")
        stopped = follow_or_stop(store, results, total, fleet, price, budget)
    finally:
        fleet.stop()
        if redis is not None:
            redis.stop()
        store.fleet_down(QUEUE)
    return finish_run(store, results, request.results_path, total, stopped, resumable=True)
