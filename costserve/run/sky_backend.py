"""The SkyPilot Backend: a Redis head node and one cluster per fleet group; finished shards come back through the broker.

Shards travel and report back as on every backend (run/shard_tasks.py): inline, a window at a
time per group (run/shard_window.py), so the broker and the driver hold the jobs of that window,
never the whole batch; a shard is read from its file again when it is re-sent. A group
that finished its own shards takes the last waiting ones of a group whose classes it may serve. A shard
is retried by its worker as a local one is (workers/tasks.py: MAX_ATTEMPTS, the last running its jobs one at
a time); a shard that failed them all stops the run, resumable. Lost groups are replaced by `run.replan.GroupReplacer`; every cluster the backend
launched is torn down at the end, however the run ends.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.table import Table

from costserve.durations import format_duration
from costserve.notices import say, step
from costserve.request import BatchRequest
from costserve.run.broker_url import redact_url
from costserve.run.broker_watch import BrokerWatch, broker_errors
from costserve.run.replan import GroupReplacer
from costserve.run.shard_window import ShardWindow, rebalance
from costserve.run.sky_launch import launch_clusters, shard_windows
from costserve.run.sky_steer import add_capacity, group_paces, measured_calibration
from costserve.run.sky_tasks import node_tasks
from costserve.store.results import queue_run_stats
from costserve.store.run_state import Event
from costserve.store.runs import RunStore
from deploy.sky_api import local_api_server_up, stop_api_server_if_started
from solver.plan import Plan

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class SkyLaunch:
    """What a SkyPilot stretch of a run launches: `plan.groups[first:]` (and a broker unless `broker`).

    `deadline_s` (s) is what remains for this stretch, `budget` ($) the run's total.
    """

    request: BatchRequest
    plan: Plan
    first: int
    broker: str | None
    offerings: pd.DataFrame
    gpus: pd.DataFrame
    deadline_s: float
    budget: float | None


class SkyBackend:
    """The SkyPilot backend of one run: launches clusters, collects shards from the result store, replaces lost groups."""

    def __init__(self, store: RunStore, results: sqlite3.Connection, launch: SkyLaunch) -> None:
        from deploy.sky_fleet import SkyFleet

        self.store, self.results, self.spec = store, results, launch
        self.fleet = SkyFleet(store.id, store.dir / "logs")
        self.tasks: Any = None  # run.shard_tasks.ShardTasks, once the broker is up
        self.windows: dict[str, ShardWindow[Any]] = {}  # group queue (g0, g1, ...) → its shards, sent as task ids
        self.error: str | None = None
        self.replacer: GroupReplacer | None = None  # set once the fleet is up
        self.may_add_capacity = True
        self.broker_url = ""  # once launched: the head node's, or the run's own
        self.api_server_was_up = True  # until launch() looks: never stop a server costserve did not start
        self.watch = BrokerWatch(store, f"the broker {redact_url(launch.broker)}" if launch.broker else "the head node")

    def launch(self) -> None:
        from costserve.run.shard_tasks import ShardTasks
        from workers.celery_app import make_app

        spec = self.spec
        self.api_server_was_up = local_api_server_up()  # one costserve's launch starts is stopped at the teardown
        groups = spec.plan.model_copy(update={"groups": spec.plan.groups[spec.first :]})
        tasks = node_tasks(spec.plan.model, spec.request.model_source, spec.request.shard_size, plan=spec.plan)
        files = tasks.write(groups, spec.gpus, self.store.dir, spec.first)
        broker, failed = launch_clusters(
            self.store, self.fleet, groups, files, spec.first, spec.broker, spec.offerings, tasks
        )
        self.broker_url = broker
        self.tasks = ShardTasks(self.store, self.results, make_app(broker))
        self.windows = shard_windows(self.store, self.tasks, spec.plan, spec.first, spec.request.shard_size)
        self.replacer = GroupReplacer(
            self.store,
            self.fleet,
            self.tasks,
            spec.plan,
            spec.offerings,
            spec.gpus,
            spec.request,
            broker,
            tasks,
            spec.deadline_s,
            spec.budget,
        )
        for queue, exc, started in failed:  # no capacity, a quota: re-planned without it, or the run stops
            self.replacer.launch_failed(queue, exc, started, self.windows)

    def price_per_hour(self) -> float:
        return self.store.running_price_per_hour()

    def teardown(self) -> str | None:
        with step("tearing the fleet down (sky down)..."):
            left = self.fleet.down_all()
        for queue in {row.group for row in self.store.fleet()}:
            self.store.fleet_down(queue)
        if not left and stop_api_server_if_started(self.api_server_was_up):
            say("stopped the SkyPilot API server this run started")
        return f"could not tear down {', '.join(left)}; run `sky down {' '.join(left)}`" if left else None

    def poll(self) -> None:
        try:
            for queue, window in list(self.windows.items()):
                if (error := self.tasks.poll(window, queue)) is not None and self.error is None:
                    self.error = f"{error}; `costserve resume {self.store.id}` tries it again"
        except broker_errors() as exc:
            self.watch.lost(exc, time.monotonic())  # BrokerGone (resumable) once it stays away BROKER_GIVE_UP_S
            return
        if self.watch.answered():
            self.tasks.reconnect(self.broker_url, self.windows.values())
        served = {
            f"g{i}": {c for c, share in g.class_shares.items() if share > 0}
            for i, g in enumerate(self.spec.plan.groups)
        }
        if moved := rebalance(self.windows, served, self.store.move_shard):
            self.store.event(Event.REBALANCED, f"{moved} shard(s) moved to a group that finished its own")

    def settle(self) -> None:
        self.tasks.settle(self.windows)

    def paces(self, now: float) -> list[Any]:
        """Each running group's measured pace, for the deadline steering (run/sky_steer.py)."""
        return group_paces(self, now)

    def add_capacity(self, late: dict[str, float], why: str, paces: list[Any]) -> str | None:
        """New groups for the jobs that would finish after the deadline, within the budget left, planned at the rates
        `paces` measured (run/sky_steer.py)."""
        return add_capacity(self, late, why, measured_calibration(self.spec.plan, paces))

    def replace_lost(self) -> None:
        if self.replacer is not None and self.error is None:
            self.replacer.check(self.windows)  # NoCapacity when a lost group has no replacement that fits

    def alive(self) -> bool:
        return self.error is None

    def gone(self) -> str:
        return f"{self.error} (run {self.store.id})"

    def status(self, now: float) -> RenderableType:
        table = Table(box=None, header_style="dim")
        for column in ("group", "instances", "shards done", "queued", "tokens", "last shard"):
            table.add_column(column, justify="left" if column == "group" else "right")
        done = queue_run_stats(self.results)
        for queue, _, instances, *_ in self.store.fleet():
            if queue == "broker":
                continue
            n, tok, last = done.get(queue, (0, 0, None))
            waiting = len(self.windows[queue]) if queue in self.windows else 0
            table.add_row(
                queue,
                str(instances),
                str(n),
                str(waiting),
                f"{tok or 0:,}",
                f"{format_duration(now - last)} ago" if last else "–",
            )
        return table
