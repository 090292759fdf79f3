"""A run's cost report as numbers: planned vs actual per fleet group, totals, baselines, timeline.

Everything is read from the run store (`run.sqlite`: fleet uptimes and events;
`results.sqlite`: one row per finished job and one per shard execution; `plan.json`), so
the report of a finished run always equals what the store says. Money in $, rates in $/h,
times in seconds, throughput in output tokens/s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from costserve.store.run_state import Event
from costserve.store.runs import RunStore
from solver.plan import LOCAL_CLOUD

if TYPE_CHECKING:
    import pandas as pd

    from costserve.report.occupancy import GroupOccupancy
    from solver.plan import Plan


@dataclass
class RunReport:
    """The numbers behind `costserve report RUN`."""

    run_id: str
    model: str
    jobs: int
    results: int
    failed: int
    retried: int
    output_tokens: int
    cost: float
    predicted_cost: float | None
    makespan_s: float
    predicted_makespan_s: float | None
    queue_wait_s: float
    max_queue_wait_s: float
    groups: pd.DataFrame
    baselines: pd.DataFrame
    timeline: pd.DataFrame  # output tokens finished per second since queued: t (s), tokens
    finished: bool
    planned_output_tokens: float | None = None  # what the plan costs: the jobs' max_tokens × plan.output_share
    first_start_s: float | None = None  # the run's start-up (s): workers starting and loading the model (startup_seconds)
    planned_startup_s: float = 0.0  # the start-up the plan counted (s): its groups' longest
    local: bool = False  # the run's fleet was this machine: its baselines are what the cloud would cost instead
    steering: tuple[str, ...] = ()  # the deadline steering's decisions: what it measured, what it added, what it cost

    def prediction(self) -> dict[str, Any]:
        """Predicted ÷ actual per figure, and the likely causes of a miss (costserve/report/accuracy.py)."""
        from costserve.report.accuracy import likely_causes, occupancy_warnings, prediction_checks

        return {"checks": [c.as_json() for c in prediction_checks(self)], "causes": likely_causes(self),
                "batch": occupancy_warnings(self)}

    @property
    def usd_per_million_tokens(self) -> float | None:
        """Actual $ per 1M output tokens (None before any token)."""
        return self.cost / self.output_tokens * 1e6 if self.output_tokens else None

    @property
    def tokens_per_s(self) -> float:
        """Output tokens per second of makespan."""
        return self.output_tokens / self.makespan_s if self.makespan_s > 0 else 0.0

    def totals(self) -> dict[str, float | int | str | None]:
        """The headline figures, as the CSV and HTML show them: each planned figure once, under the name the cause
        lines use (costserve/report/accuracy.py)."""
        from costserve.report.accuracy import once_started

        started = once_started(self)
        planned = (self.planned_output_tokens / self.predicted_makespan_s
                   if self.planned_output_tokens and self.predicted_makespan_s else None)
        return {
            "run": self.run_id, "model": self.model, "jobs": self.jobs, "results": self.results, "failed": self.failed,
            "retried jobs": self.retried, "output tokens": self.output_tokens, "cost $": round(self.cost, 6),
            "predicted cost $": None if self.predicted_cost is None else round(self.predicted_cost, 6),
            "$ per 1M output tokens": None if self.usd_per_million_tokens is None else round(self.usd_per_million_tokens, 4),
            "makespan s": round(self.makespan_s, 1),
            "predicted makespan s": None if self.predicted_makespan_s is None else round(self.predicted_makespan_s, 1),
            "output tokens/s": round(self.tokens_per_s, 2),
            "planned output tokens/s": None if planned is None else round(planned, 2),
            "output tokens/s once started": None if started is None else round(started[0], 2),
            "planned output tokens/s once started": None if started is None else round(started[1], 2),
            "mean queue wait s": round(self.queue_wait_s, 1), "max queue wait s": round(self.max_queue_wait_s, 1),
        }

    def as_json(self) -> dict[str, Any]:
        """Totals, per-group rows and baselines as JSON-ready values (NaN as null): `report --json`, `Run.report()`."""
        from costserve.units import json_keys, json_records

        return {"totals": json_keys(self.totals()), "groups": json_records(self.groups),
                "baselines": json_records(self.baselines), "prediction": self.prediction(), "steering": list(self.steering)}


def _planned_tokens(plan: Plan, shares: dict[str, float]) -> float:
    """Output tokens the plan gives a group: its share of each class × the class's tokens (max_tokens × the plan's
    output share)."""
    by_name = {k.name: k for k in plan.workload}
    return sum(s * by_name[name].count * by_name[name].output_tokens for name, s in shares.items() if name in by_name)


def _group_frame(store: RunStore, plan: Plan | None, results: pd.DataFrame, queued: float, now: float,
                 occupancy: dict[str, GroupOccupancy] | None = None) -> pd.DataFrame:
    """One row per fleet group (and the broker node): instances, instance-hours, $ and tokens, each beside the plan's
    figure, and each replica's planned batch beside its measured steady occupancy (sequences in flight)."""
    import pandas as pd

    from deploy.skypilot import group_queue

    periods: dict[str, list[tuple[int, int, float, float]]] = {}
    for row in store.fleet():  # a resumed run has several periods per group
        hours = row.instances * ((row.down or now) - row.up) / 3600
        periods.setdefault(row.group, []).append((row.group_index, row.instances, row.price_per_hour, hours))
    rows = []
    for queue, spans in periods.items():
        index, instances, price = spans[0][0], spans[-1][1], spans[-1][2]
        group = plan.groups[index] if plan is not None and 0 <= index < len(plan.groups) else None  # -1: the broker node
        hours = sum(h for *_, h in spans)
        mine = results[results["queue"] == queue]  # its shards
        tokens = int(mine["tokens"].sum())
        span = float(mine["finished"].max() - queued) if len(mine) else 0.0
        planned_tokens = _planned_tokens(plan, group.class_shares) if group and plan else None
        rows.append({
            "group": index, "queue": queue,
            "offering": f"{group.cloud}/{group.instance_type}" if group else queue,
            "instances": instances,
            "planned instances": group.count if group else None,
            "instance-hours": hours,
            "planned instance-hours": group.count * group.finish_s / 3600 if group else None,
            "GPU-hours": hours * (group.gpus_per_instance if group else 0),
            "$/h": price,
            "cost $": sum(p * h for _, _, p, h in spans),
            "planned cost $": group.count * group.finish_s / 3600 * group.price_per_hour if group else None,
            "jobs": int(mine["jobs"].sum()),
            "output tokens": tokens,
            "planned output tokens": planned_tokens,
            "tokens/s": tokens / span if span > 0 else 0.0,
            "planned tokens/s": planned_tokens / group.finish_s if planned_tokens is not None and group and group.finish_s else None,
            **_occupancy_columns(group, (occupancy or {}).get(group_queue(store.id, queue))),
        })
    frame = pd.DataFrame(rows)
    if len(frame):  # predicted ÷ actual per group (costserve/report/accuracy.py judges them)
        frame["cost predicted/actual"] = frame["planned cost $"] / frame["cost $"].where(frame["cost $"] > 0)
        frame["tokens/s predicted/actual"] = frame["planned tokens/s"] / frame["tokens/s"].where(frame["tokens/s"] > 0)
    return frame


def _occupancy_columns(group: Any, measured: GroupOccupancy | None) -> dict[str, Any]:
    """The planned batch per replica and the measured steady occupancy (mean sequences in flight per round, its peak)."""
    return {"planned batch": group.replica.planned_batch if group is not None else None,
            "steady occupancy": measured.steady if measured is not None else None,
            "peak occupancy": measured.peak if measured is not None else None,
            "occupancy/planned batch": measured.ratio if measured is not None else None}


def startup_seconds(runs: pd.DataFrame, queued: float) -> float | None:
    """The run's start-up (s): from queueing to its first shard starting, plus what that shard took beyond the later
    shards' median time per job (a worker loads its model in its first shard). None before any shard ran."""
    if not len(runs):
        return None
    ordered = runs.sort_values("started")
    first = ordered.iloc[0]
    later = ordered.iloc[1:]
    later = later[later["jobs"] > 0]
    per_job = float(((later["finished"] - later["started"]) / later["jobs"]).median()) if len(later) else None
    excess = 0.0 if per_job is None else max(0.0, float(first["finished"] - first["started"]) - per_job * int(first["jobs"]))
    return max(0.0, float(first["started"] - queued)) + excess


def build_report(store: RunStore, now: float | None = None) -> RunReport:
    """The report of one run, from its store; a running run is reported up to `now` (unix s)."""
    import pandas as pd

    from costserve.report.occupancy import group_occupancy
    from costserve.store.results import result_frames, results_db, tokens_per_second

    now = time.time() if now is None else now
    plan = store.plan()
    jobs = int(store.input_info()["jobs"])
    queued = store.first_event_time(Event.QUEUED) or store.created()
    con = results_db(store.dir)
    try:
        results, runs = result_frames(con)  # a row per shard
        occupancy = group_occupancy(con, jobs)
        timeline = tokens_per_second(con, queued)
    finally:
        con.close()
    shard_queue = {s.shard_id: s.group for s in store.shards()}
    results["queue"] = results["shard"].map(shard_queue)
    done = int(results["jobs"].sum())
    end = store.first_event_time(Event.FINISHED)
    last = float(results["finished"].max()) if len(results) else queued
    makespan = max(0.0, (last if end is not None or done == jobs else now) - queued)
    waits = (runs["started"] - queued).clip(lower=0) if len(runs) else pd.Series([0.0])
    groups = _group_frame(store, plan, results, queued, now, occupancy)
    cost = float(groups["cost $"].sum()) if len(groups) else 0.0
    baselines = pd.DataFrame([
        {"plan": b.name, "fleet": b.fleet or "none", "precision": b.precision,
         "against costserve's fleet": b.differs or b.note, "predicted cost $": b.cost,
         "predicted makespan s": b.makespan_s,
         "cost ÷ this run's cost": (b.cost / cost) if b.cost is not None and cost > 0 else None}
        for b in (plan.baselines if plan else [])
    ])
    return RunReport(
        run_id=store.id, model=plan.model if plan else "", jobs=jobs, results=done,
        failed=int(results["failed"].sum()), retried=int(results["retried"].sum()), output_tokens=int(results["tokens"].sum()),
        cost=cost,
        predicted_cost=plan.cost if plan else None, makespan_s=makespan,
        predicted_makespan_s=plan.makespan_s if plan else None,
        queue_wait_s=float(waits.mean()), max_queue_wait_s=float(waits.max()), groups=groups, baselines=baselines,
        timeline=timeline, finished=end is not None,
        planned_output_tokens=sum(k.count * k.output_tokens for k in plan.workload) if plan else None,
        first_start_s=startup_seconds(runs, queued),
        planned_startup_s=max((g.startup_s for g in plan.groups), default=0.0) if plan else 0.0,
        local=bool(plan and plan.groups and all(g.cloud == LOCAL_CLOUD for g in plan.groups)),
        steering=tuple(f"{kind}: {d}" for kind in (Event.STEERED, Event.DEADLINE_MISS) for d in store.events(kind)),
    )


TREND_COLUMNS = ["run", "created", "model", "jobs", "results", "failed", "output tokens", "cost $", "predicted cost $",
                 "$ per 1M output tokens", "makespan s", "predicted makespan s", "finished"]


def runs_since(since_s: float, now: float | None = None) -> pd.DataFrame:
    """One row per run created in the last `since_s` seconds: when (ISO-8601), jobs, cost $ and makespan beside their predictions,
    $/1M tokens (the nightly trend: later nights plan from earlier ones' calibration).

    Dry runs (`submit --dry-run`) spent nothing and ran nothing: they are left out."""
    import pandas as pd

    from costserve.store.runs import list_runs
    from costserve.units import iso_time

    now = time.time() if now is None else now
    rows = []
    for store in list_runs():
        if store.created() < now - since_s or store.dry_run:
            continue
        r = build_report(store, now)
        rows.append({"run": r.run_id, "created": iso_time(store.created()),
                     "model": r.model, "jobs": r.jobs, "results": r.results, "failed": r.failed,
                     "output tokens": r.output_tokens, "cost $": r.cost, "predicted cost $": r.predicted_cost,
                     "$ per 1M output tokens": r.usd_per_million_tokens, "makespan s": r.makespan_s,
                     "predicted makespan s": r.predicted_makespan_s, "finished": r.finished})
    return pd.DataFrame(rows, columns=TREND_COLUMNS)
