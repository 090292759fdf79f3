"""Lost fleet groups (spot preemption, a node that died): detect through `sky.status`, re-plan the rest, replace.

Every PREEMPTION_CHECK_S the driver asks SkyPilot for the status of each running group's
cluster. A cluster that is gone or not UP is a lost group: it is torn down and its billing
stops. The unfinished shards of every group lost at one check (a zone's preemption takes all
its groups at once) are re-planned together with the fleet MILP over the jobs they hold, with
those offerings' availability reduced by the instances just lost, within the budget and
deadline that remain; the new groups are launched (queues numbered after the run's existing
ones) and the shards re-sent to them. The user is told each step. A group whose launch the cloud
refuses (no capacity, a quota) takes the same path, without what failed (run/launch_failure.py).
When nothing fits, the groups still running take the shards (the steering says if the deadline
will be missed); with none left, the run stops (NoCapacity), resumable. Results are keyed by
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
    tried: list[str] = field(default_factory=list)  # what failed launches ruled out, for the stop's line

    def check(self, windows: dict[str, Any]) -> None:
        """Replace every lost group (at most every PREEMPTION_CHECK_S); NoCapacity when no replacement fits.

        `windows`: each running group's ShardWindow (run/shard_window.py); a lost group's shards move to the windows of
        its replacements."""
        if time.monotonic() - self.last_check < PREEMPTION_CHECK_S:
            return
        self.last_check = time.monotonic()
        from deploy.sky_fleet import cluster_name

        running = sorted({r.group for r in self.store.fleet() if r.down is None and r.group != "broker"})
        names = {q: cluster_name(self.store.id, q) for q in running}
        statuses = self.fleet.statuses(list(names.values()))
        lost = {q: statuses.get(names[q]) or "gone" for q in running if statuses.get(names[q]) != "UP"}
        if lost:
            self._replace(lost, names, windows)

    def _replace(self, lost: dict[str, str], names: dict[str, str], windows: dict[str, Any]) -> None:
        """Tear down the `lost` groups (queue -> status) and re-plan their unfinished shards together: one fleet for
        all the jobs a zone's preemption took, not one per group, so the replacement pays one round of start-ups and
        rounds its instances up once."""
        left: list[str] = []
        why: list[str] = []
        for queue, status in lost.items():
            group = self.plan.groups[int(queue[1:])]
            self.fleet.forget(names[queue])
            self.store.fleet_down(queue)
            why.append(f"{_described(queue, group)} is {status}")
            shards = self._take(queue, windows)
            self.store.event(Event.GROUP_LOST, f"{why[-1]}; {len(shards)} shard(s) to re-plan")
            say(f"{why[-1]}: re-planning its {len(shards)} unfinished shard(s)")
            if shards:
                row = self._offering(group)
                self.offerings.loc[row, "availability"] = (self.offerings.loc[row, "availability"] - group.count).clip(
                    lower=0
                )
            left += shards
        self._replan(left, " and ".join(why), windows)

    def launch_failed(self, queue: str, exc: BaseException, started: float, windows: dict[str, Any]) -> None:
        """Group `queue`'s launch (begun at `started`, epoch s) raised `exc`: record it (an event and the attempt's
        fleet period, billed as an upper bound), rule out what failed (run/launch_failure.py) and re-plan its shards.

        Re-raises `exc` when it is not the cloud refusing; NoCapacity when nothing left fits."""
        from costserve.run.launch_failure import classify, rule_out
        from deploy.sky_fleet import cluster_name

        failure = classify(exc)
        if failure is None:
            raise exc
        from costserve.run.launch_failure import MAX_LAUNCH_FAILURES

        group = self.plan.groups[int(queue[1:])]
        self.fleet.forget(cluster_name(self.store.id, queue))  # whatever SkyPilot half-made goes down now
        self.store.fleet_up(queue, int(queue[1:]), group.count, group.price_per_hour, since=started)
        self.store.fleet_down(queue)
        ruled_out = rule_out(self.offerings, group, failure)
        failed = f"{_described(queue, group)} could not launch ({failure})"
        self.tried.append(f"{ruled_out}: {failure.kind}")
        self.store.event(Event.LAUNCH_FAILED, f"{failed}; ruled out for this run: {ruled_out}")
        if len(self.tried) >= MAX_LAUNCH_FAILURES:
            from costserve.errors import NoCapacity

            raise NoCapacity(
                f"{failed}; {len(self.tried)} launches refused ({'; '.join(self.tried)}); "
                f"`costserve resume {self.store.id}` tries again"
            )
        say(f"{failed}: re-planning without {ruled_out}")
        self._replan(self._take(queue, windows), failed, windows)

    def _take(self, queue: str, windows: dict[str, Any]) -> list[str]:
        gone = windows.pop(queue, None)
        return gone.take_all() if gone is not None else []

    def _offering(self, group: Any) -> Any:
        o = self.offerings
        return o[
            (o["cloud"] == group.cloud) & (o["region"] == group.region) & (o["instance_type"] == group.instance_type)
        ].index

    def add(self, shards: list[str], why: str, windows: dict[str, Any], measured: Any = None) -> str | None:
        """Re-plan the jobs of `shards` on new groups that finish them by the deadline within what the budget leaves
        once the running fleet is paid to the deadline, and launch them (the deadline steering); None when nothing
        fits, nothing launched. `measured`: the running groups' measured rates as a calibration (solver.planner's
        Calibrate), so hardware already running is planned at the rate it shows."""
        from costserve.durations import format_money
        from costserve.errors import PlanningError
        from costserve.planning.batch import replan_jobs
        from costserve.store.shard_files import read_shard
        from solver.steering import budget_for_added

        remaining_s = self.deadline_s - (time.time() - self.started)
        budget = budget_for_added(self.budget, self.store.spend(), self.store.running_price_per_hour(), remaining_s)
        if remaining_s <= 0 or (budget is not None and budget <= 0):
            return None
        jobs = [job for sid in shards for job in read_shard(self.store.dir, sid)]
        try:
            new = replan_jobs(
                jobs, self.request, self.plan.model, self.offerings, self.gpus, remaining_s, budget, measured
            )
        except PlanningError:
            return None
        fleet = ", ".join(f"{g.count}x {g.cloud}/{g.region}/{g.instance_type}" for g in new.groups)
        self._launch(new, shards, windows)
        return f"added {fleet} for {len(jobs):,} job(s) ({len(shards)} shard(s)), planned {format_money(new.cost)}"

    def _deal(self, left: list[str], queues: list[str]) -> dict[str, list[str]]:
        """Deal `left`'s shards to `queues` in turn and record each move in the store; the shards of each queue."""
        moved: dict[str, list[str]] = {q: [] for q in queues}
        for j, sid in enumerate(left):
            moved[queues[j % len(queues)]].append(sid)
            self.store.move_shard(sid, queues[j % len(queues)])
        return moved

    def _replan(self, left: list[str], why: str, windows: dict[str, Any]) -> None:
        """Re-plan the jobs of shards `left` within the deadline and budget that remain, launch the new groups and send
        the shards to them; NoCapacity (the run stops, resumable) when no fleet fits."""
        from costserve.errors import NoCapacity, PlanningError
        from costserve.planning.batch import replan_jobs
        from costserve.store.shard_files import read_shard

        if not left:
            return
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
            self.store.event(Event.NO_REPLACEMENT, str(exc))
            if windows:  # groups still running take the shards (late, maybe, but not stopped): the steering says so
                survivors = sorted(windows)
                for queue, shards in self._deal(left, survivors).items():
                    windows[queue].waiting.extend(shards)
                say(
                    f"{why} and no replacement fits the remaining budget and deadline ({exc}): its {len(left)} shard(s) "
                    f"go to {', '.join(survivors)}"
                )
                return
            tried = f"; ruled out: {', '.join(self.tried)}" if self.tried else ""
            raise NoCapacity(
                f"{why} and no replacement fits the remaining budget and deadline: {exc}{tried}; "
                f"`costserve resume {self.store.id}` tries again"
            ) from None
        self._launch(new, left, windows)

    def _launch(self, new: Any, left: list[str], windows: dict[str, Any]) -> None:
        from costserve.run.shard_window import window_size

        first = len(self.plan.groups)
        files = self.tasks.write(new, self.gpus, self.store.dir, first)
        self.plan.groups.extend(new.groups)
        self.store.write_json("plan.json", self.plan.model_dump_json(indent=2))
        queues = [f"g{k}" for k in range(first, first + len(new.groups))]
        for (queue, shards), g in zip(self._deal(left, queues).items(), new.groups):
            size = window_size(g.count * g.replicas, g.replica.planned_batch, self.request.shard_size)
            windows[queue] = group_window(self.shard_tasks, queue, size, shards)
        for path, queue, g in zip(files, queues, new.groups):
            say(f"launching replacement {queue}: {g.count}x {g.cloud}/{g.region}/{g.instance_type}")
            self.store.event(Event.LAUNCHING, queue)
            started = time.time()
            try:
                self.fleet.launch_group(path, queue, self.tasks.secrets(self.broker))
            except Exception as exc:  # noqa: BLE001 — launch_failed re-raises what is not the cloud refusing
                self.launch_failed(queue, exc, started, windows)
                continue
            self.store.fleet_up(queue, int(queue[1:]), g.count, g.price_per_hour)
            windows[queue].fill()
        self.store.event(
            Event.REPLACED, f"{len(left)} shard(s) re-sent to {', '.join(q for q in queues if q in windows)}"
        )


def _described(queue: str, group: Any) -> str:
    return f"{queue} ({group.count}x {group.cloud}/{group.region}/{group.instance_type}{' spot' if group.spot else ''})"
