"""Lost fleet groups (spot preemption, a node that died): detect through `sky.status`, re-plan the rest, replace.

Every PREEMPTION_CHECK_S the driver asks SkyPilot for the status of each running group's
cluster. A cluster that is gone or not UP is a lost group: it is torn down and its billing
stops; its unfinished shards are re-planned with the fleet MILP over the jobs they hold, with
that offering's availability reduced by the instances just lost, within the budget and
deadline that remain; the new groups are launched (queues numbered after the run's existing
ones) and the shards re-sent to them. The user is told each step. Results are keyed by
custom_id, so a shard the lost group had half done cannot be duplicated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from costserve.notices import say
from costserve.request import BatchRequest
from costserve.run.sky_queues import group_window
from costserve.store.run_state import Event
from costserve.store.runs import RunStore

PREEMPTION_CHECK_S = 30.0


@dataclass
class GroupReplacer:
    """Watches a run's SkyPilot groups and replaces any that is lost."""

    store: RunStore
    fleet: Any  # deploy.sky_fleet.SkyFleet
    shard_tasks: Any  # run.shard_tasks.ShardTasks on the run's broker: sends shards, writes their reports
    plan: Any  # solver.plan.Plan; replacement groups are appended
    offerings: Any  # pandas DataFrame, availability reduced as groups are lost
    gpus: Any
    request: BatchRequest
    broker: str
    tasks: Any  # costserve.run.sky_tasks.NodeTasks: what replacement groups install, and their secrets
    deadline_s: float
    budget: float | None
    started: float = field(default_factory=time.time)
    last_check: float = field(default_factory=time.monotonic)
    error: str | None = None

    def check(self, windows: dict[str, Any]) -> None:
        """Replace every lost group (at most every PREEMPTION_CHECK_S); sets `error` when a replacement cannot fit.

        `windows`: each running group's ShardWindow (run/shard_window.py); a lost group's shards move to the windows of
        its replacements."""
        if time.monotonic() - self.last_check < PREEMPTION_CHECK_S:
            return
        self.last_check = time.monotonic()
        from deploy.sky_fleet import cluster_name

        running = sorted({r.group for r in self.store.fleet() if r.down is None and r.group != "broker"})
        names = {q: cluster_name(self.store.id, q) for q in running}
        statuses = self.fleet.statuses(list(names.values()))
        for queue in running:
            status = statuses.get(names[queue])
            if status != "UP":
                self._replace(queue, names[queue], status or "gone", windows)

    def _replace(self, queue: str, name: str, status: str, windows: dict[str, Any]) -> None:
        from costserve.errors import PlanningError
        from costserve.planning.batch import replan_jobs
        from costserve.run.shard_window import window_size
        from costserve.store.shard_files import read_shard

        group = self.plan.groups[int(queue[1:])]
        self.fleet.forget(name)
        self.store.fleet_down(queue)
        lost = f"{queue} ({group.count}x {group.cloud}/{group.region}/{group.instance_type}{' spot' if group.spot else ''}) is {status}"
        gone = windows.pop(queue, None)
        left = gone.take_all() if gone is not None else []
        self.store.event(Event.GROUP_LOST, f"{lost}; {len(left)} shard(s) to re-plan")
        say(f"{lost}: re-planning its {len(left)} unfinished shard(s)")
        if not left:
            return
        row = self.offerings[
            (self.offerings["cloud"] == group.cloud)
            & (self.offerings["region"] == group.region)
            & (self.offerings["instance_type"] == group.instance_type)
        ].index
        self.offerings.loc[row, "availability"] = (self.offerings.loc[row, "availability"] - group.count).clip(lower=0)
        jobs = [job for sid in left for job in read_shard(self.store.dir, sid)]
        remaining_s = self.deadline_s - (time.time() - self.started)
        remaining_budget = None if self.budget is None else self.budget - self.store.spend()
        try:
            if remaining_s <= 0 or (remaining_budget is not None and remaining_budget <= 0):
                raise PlanningError("no deadline or budget left")
            new = replan_jobs(
                jobs, self.request, self.plan.model, self.offerings, self.gpus, remaining_s, remaining_budget
            )
        except PlanningError as exc:
            self.error = f"{lost} and no replacement fits the remaining budget and deadline: {exc}"
            return
        first = len(self.plan.groups)
        files = self.tasks.write(new, self.gpus, self.store.dir, first)
        self.plan.groups.extend(new.groups)
        self.store.write_json("plan.json", self.plan.model_dump_json(indent=2))
        queues = []
        for k, (path, g) in enumerate(zip(files, new.groups), start=first):
            say(f"launching replacement g{k}: {g.count}x {g.cloud}/{g.region}/{g.instance_type}")
            self.store.event(Event.LAUNCHING, f"g{k}")
            self.fleet.launch_group(path, f"g{k}", self.tasks.secrets(self.broker))
            self.store.fleet_up(f"g{k}", k, g.count, g.price_per_hour)
            queues.append(f"g{k}")
        moved: dict[str, list[str]] = {q: [] for q in queues}
        for j, sid in enumerate(left):
            target = queues[j % len(queues)]
            moved[target].append(sid)
            self.store.move_shard(sid, target)
        for (target, shards), g in zip(moved.items(), new.groups):
            size = window_size(g.count * g.replicas, g.replica.planned_batch, self.request.shard_size)
            windows[target] = group_window(self.shard_tasks, target, size, shards)
            windows[target].fill()
        self.store.event(Event.REPLACED, f"{queue} -> {', '.join(queues)} ({len(left)} shard(s) re-sent)")
