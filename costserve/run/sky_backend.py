"""The SkyPilot Backend: a Redis head node and one cluster per fleet group; finished shards come back through the broker.

Remote workers share no directory with the driver, so each shard travels inline in its Celery
task (`workers.tasks.run_jobs`) and its outputs come back as the task result; this writes them
into the run store as they arrive. A shard that failed is re-sent, at most MAX_SHARD_ATTEMPTS
times. Lost groups are replaced by `run.replan.GroupReplacer`; every cluster the backend
launched is torn down at the end, however the run ends.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.table import Table

from costserve.request import BatchRequest
from costserve.run.replan import GroupReplacer
from costserve.run.sky_launch import launch_clusters, send_shards
from costserve.run.sky_tasks import node_tasks
from costserve.run.sky_queues import send_shard
from costserve.store.results import queue_run_stats
from costserve.store.runs import RunStore
from costserve.notices import step
from solver.plan import Plan

if TYPE_CHECKING:
    import pandas as pd

MAX_SHARD_ATTEMPTS = 3


@dataclass
class SkyLaunch:
    """What a SkyPilot stretch of a run launches: `plan.groups[first:]` (and a broker unless `broker`).

    `deadline_s` (s) is what remains for this stretch, `budget` ($) the run's total.
    """

    request: BatchRequest
    plan: Plan
    first: int
    broker: str | None
    offerings: "pd.DataFrame"
    gpus: "pd.DataFrame"
    deadline_s: float
    budget: float | None


class SkyBackend:
    """The SkyPilot backend of one run: launches clusters, collects shards from the result store, replaces lost groups."""

    def __init__(self, store: RunStore, results: sqlite3.Connection, launch: SkyLaunch) -> None:
        from deploy.sky_fleet import SkyFleet

        self.store, self.results, self.spec = store, results, launch
        self.fleet = SkyFleet(store.id, store.dir / "logs")
        self.app: Any = None
        self.pending: dict[str, tuple[Any, str, list[dict[str, Any]]]] = {}
        self.attempts: dict[str, int] = {}
        self.error: str | None = None
        self.replacer: GroupReplacer | None = None  # set once the fleet is up
        self.may_add_capacity = True

    def launch(self) -> None:
        from workers.celery_app import make_app

        spec = self.spec
        groups = spec.plan.model_copy(update={"groups": spec.plan.groups[spec.first:]})
        tasks = node_tasks(spec.plan.model, spec.request.model_source, spec.request.shard_size)
        files = tasks.write(groups, spec.gpus, self.store.dir, spec.first)
        broker = launch_clusters(self.store, self.fleet, groups, files, spec.first, spec.broker, spec.offerings, tasks)
        self.app = make_app(broker)
        self.pending = send_shards(self.store, self.app, {f"g{i}" for i in range(spec.first, len(spec.plan.groups))})
        self.attempts = {sid: 1 for sid in self.pending}
        self.replacer = GroupReplacer(self.store, self.fleet, self.app, spec.plan, spec.offerings, spec.gpus, spec.request,
                                      broker, tasks, spec.deadline_s, spec.budget)

    def price_per_hour(self) -> float:
        return sum(price * n for _, _, n, price, _, down in self.store.fleet() if down is None)

    def teardown(self) -> str | None:
        with step("tearing the fleet down (sky down)..."):
            left = self.fleet.down_all()
        for queue in {q for q, *_ in self.store.fleet()}:
            self.store.fleet_down(queue)
        return f"could not tear down {', '.join(left)}; run `sky down {' '.join(left)}`" if left else None

    def poll(self) -> None:
        from workers.shard_io import save_occupancy, save_result, save_shard_run

        for sid, (res, queue, jobs) in list(self.pending.items()):
            if not res.ready():
                continue
            if not res.successful():
                if self.attempts[sid] >= MAX_SHARD_ATTEMPTS:
                    self.error = f"shard {sid} failed {MAX_SHARD_ATTEMPTS} times on queue {queue}: {res.result!r}"
                    del self.pending[sid]
                    continue
                self.attempts[sid] += 1
                self.store.event("shard resent", f"{sid} (attempt {self.attempts[sid]})")
                self.pending[sid] = (send_shard(self.app, self.store, sid, queue, jobs), queue, jobs)
                continue
            done = res.get()
            for o in done["outputs"]:
                save_result(self.results, o["custom_id"], o["line"], sid, o["output"], done["attempt"], o["tokens"], o["finished"])
            for window in done.get("occupancy", ()):
                save_occupancy(self.results, done["worker"], done["queue"], *window)
            errors = sum(o["output"].get("error") is not None for o in done["outputs"])
            save_shard_run(self.results, sid, done["worker"], queue, done["attempt"], done["started"],
                           len(done["outputs"]), sum(o["tokens"] for o in done["outputs"]), errors, done["finished"])
            res.forget()
            del self.pending[sid]

    def replace_lost(self) -> None:
        if self.replacer is not None and self.error is None:
            self.replacer.check(self.pending)
            self.error = self.replacer.error

    def alive(self) -> bool:
        return self.error is None

    def gone(self) -> str:
        return f"{self.error} (run {self.store.id})"

    def status(self, now: float) -> RenderableType:
        table = Table(box=None, header_style="dim")
        for column in ("group", "instances", "shards done", "queued", "tokens", "last shard"):
            table.add_column(column, justify="left" if column == "group" else "right")
        done = queue_run_stats(self.results)
        for queue, _, instances, _, _, _ in self.store.fleet():
            if queue == "broker":
                continue
            n, tok, last = done.get(queue, (0, 0, None))
            waiting = sum(1 for _, q, _ in self.pending.values() if q == queue)
            table.add_row(queue, str(instances), str(n), str(waiting), f"{tok or 0:,}", f"{now - last:.0f}s ago" if last else "–")
        return table
