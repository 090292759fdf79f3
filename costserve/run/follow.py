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

from costserve.run.budget import BudgetGuard
from costserve.store.results import progress as results_progress, shard_run_stats
from costserve.store.runs import RunStore
from costserve.notices import Tick, live, warn

if TYPE_CHECKING:
    from costserve.run.backend import Backend

POLL_S = 0.5


class Cancelled(Exception):
    """`costserve cancel` asked the run to stop."""


class WorkersGone(Exception):
    """Every worker process exited before the run finished."""


class ShardFailed(Exception):
    """A shard failed on every attempt the workers allow; the run stops (resumable)."""


class DiskFull(Exception):
    """The run directory's filesystem stayed full: workers cannot record results; the run stops (resumable)."""


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
            warn(f"{self.store.dir}: {free:,} bytes free; the run stops in {FULL_GIVE_UP_S:.0f}s unless space is freed")
        elif now - self.full_since >= FULL_GIVE_UP_S:
            raise DiskFull(f"{self.store.dir} has had {free:,} bytes free for {now - self.full_since:.0f}s "
                           "(disk full); free space there")


def worker_table(results: sqlite3.Connection, procs: list[subprocess.Popen[bytes]], now: float) -> Table:
    """One row per worker: state, shards done, output tokens, seconds since its last shard finished."""
    table = Table(box=None, show_header=True, header_style="dim")
    for column in ("worker", "state", "shards", "tokens", "last shard"):
        table.add_column(column, justify="left" if column in ("worker", "state") else "right")
    rows = {w.rsplit("/", 1)[-1]: stats for w, stats in shard_run_stats(results, "worker").items()}
    for proc in procs:
        state = "running" if proc.poll() is None else f"exited ({proc.returncode})"
        shards = tokens = 0
        last: float | None = None
        for pid, (n, tok, fin) in rows.items():  # a worker's pool processes are its children: count them by process group
            if _in_group(int(pid), proc.pid):
                shards, tokens, last = shards + n, tokens + (tok or 0), max(last or 0, fin)
        table.add_row(f"pid {proc.pid}", state, str(shards), f"{tokens:,}", f"{now - last:.0f}s ago" if last else "–")
    return table


def _in_group(pid: int, group: int) -> bool:
    """Whether process `pid` is (or was) in process group `group`; exited processes are matched by pid only."""
    import os

    try:
        return os.getpgid(pid) == group
    except ProcessLookupError:
        return pid == group


def follow(store: RunStore, results: sqlite3.Connection, total: int, backend: "Backend", price_per_hour: float,
           guard: BudgetGuard | None = None) -> None:
    """Poll until every job has a result, showing each poll in the live view; `price_per_hour` is the whole fleet's $/h.

    Raises Cancelled when `costserve cancel` asks, WorkersGone when no worker is left, DiskFull when the run
    directory's filesystem stays full, BudgetReached when `guard` says the next billing increment would cross the budget.
    """
    t0 = time.monotonic()
    done0: int | None = None
    disk = DiskWatch(store)
    with live(total) as show:
        while True:
            disk.check(time.monotonic())
            backend.poll()
            backend.replace_lost()
            done, tokens = results_progress(results)
            store.mark_finished_shards(results)
            elapsed = max(time.monotonic() - t0, 1e-9)
            spent = store.spend() if guard is None else guard.check(store)
            done0 = done if done0 is None else done0  # results from before a resume do not count toward the rate
            remaining_s = (total - done) * elapsed / (done - done0) if done > done0 else None
            if guard is not None:
                backend.may_add_capacity = guard.may_add_capacity(store, remaining_s)
            projected = spent + price_per_hour * remaining_s / 3600 if remaining_s is not None else None
            show(Tick(done, total, tokens / elapsed, spent, projected, remaining_s, backend.status(time.time())))
            if done >= total:
                return
            if store.cancel_requested():
                raise Cancelled()
            if not backend.alive():
                raise WorkersGone(backend.gone())
            time.sleep(POLL_S)


def follow_or_stop(store: RunStore, results: sqlite3.Connection, total: int, backend: "Backend", price_per_hour: float,
                   budget: float | None) -> str | None:
    """`follow` with the budget guard; None when every job has a result, else why the run stopped (one line)."""
    from costserve.run.budget import BudgetReached
    from costserve.store.patient import StoreFull

    try:
        follow(store, results, total, backend, price_per_hour, BudgetGuard(budget) if budget is not None else None)
        return None
    except Cancelled:
        return "cancelled"
    except BudgetReached as exc:
        return f"stopped at its budget: {exc}"
    except (WorkersGone, ShardFailed, DiskFull, StoreFull) as exc:
        return str(exc)
