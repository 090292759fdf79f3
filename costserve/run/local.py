"""Executing a prepared local run: broker, worker processes, queued shards, recovery, results, report.

`submit` prepares a run (plan, shards, `request.json`) and calls `execute_local`; `resume`
calls it again on a run whose driver died. Either way only shards the run store does not
have as done are queued, and results are keyed by custom_id, so nothing runs twice into
the output and nothing is lost.

Shards are queued a window at a time (run/shard_window.py): enough for every worker to hold
what keeps its replica at the planned batch, never the whole batch in the broker.

A worker process that dies mid-shard (killed, out of memory) is noticed by the driver: the
shards it had started and not finished are queued again and a replacement worker is started
(at most MAX_REPLACEMENTS per run). Redis would also redeliver them after the visibility
timeout (acks_late), but that is an hour; this takes one poll. A worker that is alive but
makes no progress for longer than the plan allows (run/watchdog.py) is killed, which turns
a hang into that same path.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.console import RenderableType

from costserve.durations import format_duration
from costserve.errors import BrokerGone, RunStateError, ShardFailed
from costserve.log_tail import last_line
from costserve.notices import warn
from costserve.request import BatchRequest
from costserve.run.broker_url import redact_url
from costserve.run.broker_watch import EXIT_WAIT_S, MAX_BROKER_RESTARTS, BrokerWatch, broker_errors
from costserve.run.drive import drive
from costserve.run.follow import worker_table
from costserve.run.kill_points import QUEUED, kill_point
from costserve.run.prepare import LOCAL_QUEUE
from costserve.run.shard_tasks import ShardTasks
from costserve.run.shard_window import ShardWindow, window_size
from costserve.run.watchdog import stall_allowance_s, stalled_workers, visibility_timeout_s
from costserve.store.results import shards_run, shards_started, shards_started_by
from costserve.store.run_state import Event, ShardState
from costserve.store.runs import RunStore
from deploy.skypilot import group_queue

MAX_REPLACEMENTS = 3


class LocalBackend:
    """The embedded backend: a broker (embedded Redis unless `broker`) and worker processes on this machine.

    Shards travel and report back as on every backend (run/shard_tasks.py); a worker that dies has its started,
    unfinished shards re-queued and is replaced (at most MAX_REPLACEMENTS per run).
    """

    def __init__(
        self,
        store: RunStore,
        results: sqlite3.Connection,
        request: BatchRequest,
        broker: str | None,
        model_dir: Path | None = None,
    ) -> None:
        self.store, self.results, self.request, self.broker = store, results, request, broker
        self.model_dir = model_dir  # resolved by the submit that planned the run; None: resolved at launch
        # local-RUN: runs sharing a --broker never take each other's shards
        self.queue = group_queue(store.id, LOCAL_QUEUE)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.spawned: dict[int, float] = {}  # pid (= process group) of each live worker → when it started (unix s)
        self.replacements = 0
        self.may_add_capacity = True
        self.redis: Any = None  # deploy.local.EmbeddedRedis, unless the run has its own broker
        self.url = ""  # the broker's, once launched
        self.watch = BrokerWatch(store, f"the broker {redact_url(broker)}" if broker else "the embedded broker")
        self.broker_restarts = 0
        plan = store.plan()
        self._price = plan.groups[0].price_per_hour if plan is not None else 0.0
        slots = plan.groups[0].replica.planned_batch if plan is not None else 1
        self.tasks: ShardTasks | None = None  # once the broker is up
        self.window: ShardWindow[str] = ShardWindow(
            window_size(request.workers, slots, request.shard_size), lambda sid: self._tasks().send(sid, self.queue)
        )
        self.stall_s = stall_allowance_s(
            plan.makespan_s if plan is not None else 0.0,
            store.input_info()["jobs"],
            request.shard_size,
            request.workers,
        )
        self.visibility_s = visibility_timeout_s(plan.makespan_s if plan is not None else 0.0, self.stall_s)

    def launch(self) -> None:
        from workers.model_source import resolve_model_dir

        self.model_dir = self.model_dir or resolve_model_dir(self.request.model)
        self.store.mark_finished_shards(self.results)
        todo = [s.shard_id for s in self.store.shards(ShardState.QUEUED)]
        self._connect()
        self.store.fleet_up(LOCAL_QUEUE, 0, 1, self._price)
        self.window.waiting.extend(todo)
        sent = self.window.fill()
        self.store.event(
            Event.QUEUED, f"{len(todo)} shards on queue {self.queue}, {sent} sent (the rest as workers finish them)"
        )
        kill_point(QUEUED)

    def _connect(self) -> None:
        """Start the embedded broker (unless the run has its own), the Celery app on it, and the workers."""
        from deploy.local import EmbeddedRedis
        from workers.celery_app import make_app

        self.redis = EmbeddedRedis(self.store.dir) if self.broker is None else None
        self.url = self.redis.url if self.redis is not None else str(self.broker)
        if self.redis is not None:
            self.store.event(Event.BROKER_PID, str(self.redis.pid))
        self.store.event(Event.BROKER, redact_url(self.url))
        if self.tasks is None:
            self.tasks = ShardTasks(self.store, self.results, make_app(self.url))
        else:  # a restarted broker: the shards' send counts (their attempt numbers) go on
            self.tasks.reconnect(self.url, [self.window])
        for _ in range(self.request.workers):
            self._spawn()

    def _start_worker(self) -> subprocess.Popen[bytes]:
        from deploy.local import start_worker
        from workers.cpu import available_cpus

        return start_worker(
            self.store.dir,
            self.queue,
            self.url,
            self.store.dir / f"replica-{LOCAL_QUEUE}.json",
            str(self.model_dir),
            self.store.dir / "workers.log",
            max(1, available_cpus() // self.request.workers),  # the workers share this machine's CPUs
            self.store.id,
            self.request.shard_size,
            self.visibility_s,
        )

    def _restart_broker(self) -> None:
        """The embedded broker died: stop the workers (what they held was in it), start a new broker and new workers,
        and send the window's shards again. BrokerGone after MAX_BROKER_RESTARTS."""
        from deploy.local import stop_worker

        assert self.redis is not None
        why = f"the embedded broker (redis-server pid {self.redis.pid}) died: {self.redis.exit_status()}"
        self.store.event(Event.BROKER_LOST, why)
        if self.broker_restarts >= MAX_BROKER_RESTARTS:
            raise BrokerGone(
                f"{why}, for the {self.broker_restarts + 1}th time; see {self.redis.log} "
                f"(`costserve resume {self.store.id}` continues the run)"
            )
        self.broker_restarts += 1
        warn(f"run {self.store.id}: {why}; restarting it with the workers (every result so far is kept)")
        for proc in self.procs:
            stop_worker(proc, timeout_s=0.0)  # at once: their shards in flight report to a broker that is gone
        self.procs.clear()
        self.spawned.clear()
        self.redis.stop()
        self._connect()
        self.store.event(Event.BROKER_BACK, f"restarted: redis-server pid {self.redis.pid}")
        self.watch.forget()  # the restart ended any outage the watch was timing

    def _tasks(self) -> ShardTasks:
        if self.tasks is None:
            raise RuntimeError("shards are sent once the backend has launched")
        return self.tasks

    def price_per_hour(self) -> float:
        return self._price

    def _spawn(self) -> None:
        proc = self._start_worker()
        self.procs.append(proc)
        self.spawned[proc.pid] = time.time()
        self.store.event(Event.WORKER_STARTED, str(proc.pid))

    def poll(self) -> None:
        """Write what the window's shards reported since the last poll; send waiting shards in place of the finished.

        Raises ShardFailed when a shard failed its last attempt: the run stops, resumable.
        """
        if self.redis is not None and not self.redis.alive():
            self._restart_broker()
        try:
            error = self._tasks().poll(self.window, self.queue)
        except broker_errors() as exc:
            if self.redis is not None and not self.redis.alive(wait_s=EXIT_WAIT_S):
                self._restart_broker()  # it died between the check above and the call
            else:
                self.watch.lost(exc, time.monotonic())  # an external broker, or a busy embedded one: waited for
            return
        if self.watch.answered():
            self._tasks().reconnect(self.url, [self.window])
        if error is not None:
            raise ShardFailed(
                f"{error}; see {self.store.dir / 'workers.log'}; `costserve resume {self.store.id}` tries it again"
            )

    def settle(self) -> None:
        self._tasks().settle({self.queue: self.window})

    def _kill_stalled(self) -> None:
        """SIGKILL the process group of every worker the watchdog finds without progress; replace_lost does the rest."""
        sent = set(self.window.sent)
        done = shards_started(self.results) - sent  # a shard leaves the window when its every job has a result
        for stall in stalled_workers(self.results, self.spawned, done, sent, self.stall_s, time.time()):
            self._tasks().problem = (
                f"worker pid {stall.pgid} made no progress for {format_duration(stall.idle_s)} ({stall.on})"
            )
            self.store.event(
                Event.WORKER_STALLED, f"{self._tasks().problem}; allowed {format_duration(self.stall_s)}; killed"
            )
            self.spawned.pop(stall.pgid)
            try:
                os.killpg(stall.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it exited meanwhile: replace_lost handles it the same way

    def replace_lost(self) -> None:
        self._kill_stalled()
        for proc in [p for p in self.procs if p.poll() is not None]:
            self.procs.remove(proc)
            self.spawned.pop(proc.pid, None)
            lost = self._unheld_shards()
            self.store.event(
                Event.WORKER_LOST, f"pid {proc.pid} exit {proc.returncode}; re-queued {', '.join(lost) or 'nothing'}"
            )
            for sid in lost:
                self.window.resend(sid)
            if self.replacements < MAX_REPLACEMENTS and self.may_add_capacity:
                self.replacements += 1
                self._spawn()
            elif not self.may_add_capacity:
                self.store.event(Event.NO_REPLACEMENT, "the projected spend is over the budget")

    def _unheld_shards(self) -> list[str]:
        """Shards of the window not finished that no live worker holds. A dead worker may have held more than it had
        started (a message it had reserved but not begun stays unacked in Redis for the visibility timeout, an hour),
        so every such shard is sent again; a copy of one that is still queued finds its jobs done and does nothing."""
        live = [p.pid for p in self.procs if p.poll() is None]
        held = set().union(*(shards_started_by(self.results, pgid) for pgid in live)) - shards_run(self.results)
        return sorted(set(self.window.sent) - held)

    def alive(self) -> bool:
        # a worker that died since the last replace_lost() is replaced by the next one, while replacements remain
        return any(p.poll() is None for p in self.procs) or (
            bool(self.procs) and self.replacements < MAX_REPLACEMENTS and self.may_add_capacity
        )

    def status(self, now: float) -> RenderableType:
        table = worker_table(self.results, self.procs, now)
        if self.tasks is not None and self.tasks.problem is not None:
            table.caption = f"last failure: {self.tasks.problem}"
        return table

    def gone(self) -> str:
        log = self.store.dir / "workers.log"
        last = last_line(log)
        return (
            f"every worker exited before the run finished ({self.replacements} replaced)"
            f"{'; last log line: ' + last if last else ''}; see {log} "
            f"(run {self.store.id}; `costserve resume {self.store.id}` continues it)"
        )

    def teardown(self) -> str | None:
        from deploy.local import stop_worker

        for p in self.procs:
            stop_worker(p)
        if self.redis is not None:
            self.redis.stop()
        self.store.fleet_down(LOCAL_QUEUE)
        return None


def execute_local(
    store: RunStore, broker: str | None, budget: float | None = None, model_dir: Path | None = None
) -> int:
    """Run every shard of `store` not yet done on local workers; write results and the report; returns the exit code.

    `budget` ($, default the request's) is enforced live by a BudgetGuard; `model_dir` is the model's directory when
    the caller resolved it already (a submit), else it is resolved from the request.
    """
    from costserve.store.results import results_db

    request = store.request()
    if request is None:
        raise RunStateError(f"run {store.id} has no request.json (a run from an older costserve); submit it again")
    results = results_db(store.dir)
    backend = LocalBackend(store, results, request, broker, model_dir)
    return drive(store, results, backend, request, budget if budget is not None else request.budget)
