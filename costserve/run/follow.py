"""Following a running batch: jobs done/total, output tokens/s, $ spent and projected, ETA, per-worker status.

It polls the run store (results.sqlite, the fleet's uptimes), never the broker, so what it
reports (a Tick per poll, to the installed Notices' live view) is what is really done.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from typing import TYPE_CHECKING

from rich.table import Table

from costserve.durations import format_duration
from costserve.errors import Cancelled, DiskFull, RunStopped, WorkersGone
from costserve.notices import Tick, live, warn
from costserve.run.budget import BudgetGuard
from costserve.run.signals import deferred, raise_pending
from costserve.run.steer import steer_for
from costserve.store.results import progress as results_progress
from costserve.store.results import worker_progress
from costserve.store.runs import RunStore
from solver.steering import MEASURED_MIN_JOBS, Pace

if TYPE_CHECKING:
    from costserve.run.backend import Backend

POLL_S = 0.5


MIN_FREE_BYTES = 1 << 20  # below this the run directory's filesystem counts as full


class DiskWatch:
    """Stops a run whose directory's filesystem has had under MIN_FREE_BYTES free for FULL_GIVE_UP_S (s)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.full_since: float | None = None

    def check(self, now: float) -> None:
        """Raise DiskFull once the filesystem has been full for FULL_GIVE_UP_S; say so when it first fills."""
        import shutil

        from costserve.store.patient import FULL_GIVE_UP_S

        free = shutil.disk_usage(self.store.dir).free
        if free >= MIN_FREE_BYTES:
            self.full_since = None
            return
        if self.full_since is None:
            self.full_since = now
            warn(
                f"{self.store.dir}: {free:,} bytes free; the run stops in {format_duration(FULL_GIVE_UP_S)} unless space is freed"
            )
        elif now - self.full_since >= FULL_GIVE_UP_S:
            raise DiskFull(
                f"{self.store.dir} has had {free:,} bytes free for {format_duration(now - self.full_since)} "
                "(disk full); free space there"
            )


def worker_state(alive: bool, returncode: int | None, shards_started: int, jobs: int) -> str:
    """`starting` (no shard yet), `loading model` (a shard started, no result yet: the engine loads on the first
    task), `running`, or `exited (CODE)`."""
    if not alive:
        return f"exited ({returncode})"
    return "starting" if not shards_started else ("loading model" if not jobs else "running")


def worker_table(results: sqlite3.Connection, procs: list[subprocess.Popen[bytes]], now: float) -> Table:
    """One row per worker: state, shards started, jobs and output tokens so far (live), time since its last result."""
    table = Table(box=None, show_header=True, header_style="dim")
    for column in ("worker", "state", "shards", "jobs", "tokens", "last result"):
        table.add_column(column, justify="left" if column in ("worker", "state") else "right")
    progress = worker_progress(results)
    for proc in procs:
        shards, jobs, tokens, last = progress.get(proc.pid, (0, 0, 0, None))  # a worker's processes share its pgid
        state = worker_state(proc.poll() is None, proc.returncode, shards, jobs)
        table.add_row(
            f"pid {proc.pid}",
            state,
            str(shards),
            f"{jobs:,}",
            f"{tokens:,}",
            f"{format_duration(now - last)} ago" if last else "–",
        )
    return table


def eta_s(left: int, first: tuple[float, int] | None, done: int, elapsed: float, new: int) -> float | None:
    """Seconds until the `left` jobs are done at the measured rate: jobs per second since the first new result (so
    worker start and model load do not count), or over the whole run while only one poll has shown results."""
    if first is not None and done > first[1]:
        return left * (time.monotonic() - first[0]) / (done - first[1])
    return left * elapsed / new if new > 0 else None


def run_pace(left: int, first: tuple[float, int] | None, done: int, total: int) -> Pace:
    """The whole run's pace: jobs left and jobs/s since the first new result, once enough jobs are done to tell."""
    enough = min(MEASURED_MIN_JOBS, max(1, total // 10))
    if first is None or done - first[1] < enough:
        return Pace("run", left, None)
    return Pace("run", left, (done - first[1]) / max(time.monotonic() - first[0], 1e-9))


def follow(
    store: RunStore,
    results: sqlite3.Connection,
    total: int,
    backend: Backend,
    price_per_hour: float,
    guard: BudgetGuard | None = None,
) -> None:
    """Poll until every job has a result, showing each poll in the live view; `price_per_hour` is the whole fleet's $/h.

    Raises Cancelled when `costserve cancel` asks, Signalled when the driver got TERM, INT or HUP, WorkersGone when no worker is left, DiskFull when the run
    directory's filesystem stays full, BudgetReached when `guard` says the next billing increment would cross the budget.
    """
    t0 = time.monotonic()
    done0: int | None = None
    first: tuple[float, int] | None = None  # (when, done) at the first poll with a new result: the rate starts there
    disk = DiskWatch(store)
    steer = steer_for(store, getattr(backend, "add_capacity", None))  # only the sky backend can add capacity
    with live(total) as show, deferred():
        while True:
            raise_pending()  # a TERM, INT or HUP since the last poll (run/signals.py)
            disk.check(time.monotonic())
            backend.poll()
            backend.replace_lost()
            done, tokens = results_progress(results)
            elapsed = max(time.monotonic() - t0, 1e-9)
            spent = store.spend() if guard is None else guard.check(store)
            done0 = done if done0 is None else done0  # results from before a resume do not count toward the rate
            if first is None and done > done0:
                first = (time.monotonic(), done)
            remaining_s = eta_s(total - done, first, done, elapsed, done - done0)
            if guard is not None:
                backend.may_add_capacity = guard.may_add_capacity(store, remaining_s)
            projected = spent + price_per_hour * remaining_s / 3600 if remaining_s is not None else None
            show(Tick(done, total, tokens / elapsed, spent, projected, remaining_s, backend.status(time.time())))
            if steer is not None and done < total:
                now, paces = time.time(), getattr(backend, "paces", None)  # per group where known, else the whole run
                steer.check(paces(now) if paces else [run_pace(total - done, first, done, total)], now)
            if done >= total:
                backend.settle()
                return
            if store.cancel_requested():
                raise Cancelled()
            if not backend.alive():
                raise WorkersGone(backend.gone())
            time.sleep(POLL_S)


def follow_or_stop(
    store: RunStore,
    results: sqlite3.Connection,
    total: int,
    backend: Backend,
    price_per_hour: float,
    budget: float | None,
) -> RunStopped | None:
    """`follow` with the budget guard; None when every job has a result, else the stop (its typed reason and line)."""
    try:
        follow(store, results, total, backend, price_per_hour, BudgetGuard(budget) if budget is not None else None)
        return None
    except RunStopped as exc:
        return exc
