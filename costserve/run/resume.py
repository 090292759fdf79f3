"""`costserve resume RUN` for a SkyPilot run whose driver died: tear down what it left, re-plan the rest, re-provision.

The dead driver's clusters cannot be reattached: the head node's Redis password was never
written anywhere, and shards in flight there report to a driver that is gone. So resume
stops them (their billing ends now), gathers every job without a result from the run's
shard files, re-plans those jobs with the fleet MILP on the deadline and budget that remain,
launches the new groups (queues numbered after the run's existing ones) and a new broker,
and finishes the run. Results are keyed by custom_id: nothing done is redone twice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from costserve.store.runs import RunStore
from costserve.run.sky import SKY_SETTINGS_FILE, model_row, operate_fleet
from costserve.cli.output import console, fail

MIN_DEADLINE_S = 900.0  # less than this left: ask for a new deadline rather than plan an impossible fleet


def stop_sky_leftovers(store: RunStore) -> list[str]:
    """`sky down` every cluster of the run that SkyPilot still lists; returns their names."""
    from deploy.sky_fleet import SkyFleet, cluster_name

    fleet = SkyFleet(store.id)
    names = [cluster_name(store.id, q) for q in sorted({q for q, *_ in store.fleet()})]
    alive = sorted(fleet.statuses(names))
    for name in alive:
        fleet.forget(name)
    return alive


def unfinished_jobs(store: RunStore) -> list[Any]:
    """Every job of the run's shards that has no result yet, in shard order."""
    from workers.shard_io import read_shard, results_db

    results = results_db(store.dir)
    done = {cid for (cid,) in results.execute("SELECT custom_id FROM results")}
    results.close()
    return [job for sid, *_ in store.shards() for job in read_shard(store.dir, sid) if job.custom_id not in done]


def resume_sky_run(store: RunStore, broker: str | None, budget: float | None, deadline: str | None) -> int:
    """Resume a dead SkyPilot run (see the module docstring); the exit code."""
    from costserve.planning.offerings import current_offerings
    from costserve.durations import parse_duration
    from costserve.run.end import finish_run
    from solver.planner import PlanningError, plan_batch
    from solver.workload import workload_from_jobs
    from workers.shard_io import results_db

    cfg = json.loads((store.dir / SKY_SETTINGS_FILE).read_text())
    budget = budget if budget is not None else cfg["budget"]
    if deadline is not None:
        remaining_s = parse_duration(deadline)
    else:
        remaining_s = cfg["deadline_s"] - (time.time() - store.created())
        if remaining_s < MIN_DEADLINE_S:
            fail(f"run {store.id}: only {max(0.0, remaining_s) / 60:.0f}m of its deadline is left; "
                 f"`costserve resume {store.id} --deadline 2h` gives it more")
    with console.status("stopping the clusters the dead driver left (sky down)..."):
        left = stop_sky_leftovers(store)
    store.close_dangling_fleet()
    if left:
        console.print(f"stopped {len(left)} leftover cluster(s): {', '.join(left)}", markup=False)
    jobs = unfinished_jobs(store)
    total = store.input_info()["jobs"]
    store.event("resumed", f"{total - len(jobs)}/{total} jobs had results")
    console.print(f"resuming run {store.id}: {total - len(jobs)}/{total} jobs already have results", markup=False)
    if not jobs:
        return finish_run(store, results_db(store.dir), Path(cfg["out"]), total, None)
    spent = store.spend()
    if budget is not None and budget - spent <= 0:
        fail(f"run {store.id} has spent ${spent:.2f} of its ${budget:.2f} budget; `costserve resume {store.id} --budget MORE`")
    plan = store.plan()
    assert plan is not None, "a SkyPilot run always has a plan"
    offerings, gpus, _ = current_offerings()
    try:
        new = plan_batch(workload_from_jobs(jobs), model_row(cfg["model"]), offerings, gpus, remaining_s,
                         None if budget is None else budget - spent, cfg["quality"], cfg["spot"], with_baselines=False)
    except PlanningError as exc:
        fail(f"run {store.id}: no fleet for the {len(jobs)} jobs left: {exc}")
    first = len(plan.groups)
    plan.groups.extend(new.groups)
    store.write_json("plan.json", plan.model_dump_json(indent=2))
    console.print(f"re-planned {len(jobs)} job(s): {', '.join(f'{g.count}x {g.instance_type}' for g in new.groups)}, "
                  f"predicted ${new.cost:.2f}", markup=False)
    return operate_fleet(store, cfg, plan, first, jobs, broker, offerings, gpus, remaining_s, budget)
