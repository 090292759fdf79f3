"""`costserve resume RUN`: finish a run whose driver died, was signalled, cancelled or stopped at its budget.

A run whose driver died while writing its shards has them written first (run/prepare.py
`finish_preparation`), so a resume always runs the whole batch.

Local runs stop what the dead driver left (workers, Redis) and re-run their unfinished shards.
A SkyPilot run's clusters cannot be reattached: the head node's Redis password was never
written anywhere, and shards in flight there report to a driver that is gone. So resume
stops them (their billing ends now), gathers every job without a result from the run's shard
files, re-plans those jobs with the fleet MILP on the deadline and budget that remain,
launches the new groups (queues numbered after the run's existing ones) and a new broker,
and finishes the run. Results are keyed by custom_id: nothing done is redone twice.
"""

from __future__ import annotations

import time

from costserve.config import load_settings
from costserve.durations import format_duration
from costserve.errors import RunStateError
from costserve.jobs.assignment import GroupAssigner, class_counts
from costserve.notices import say, step
from costserve.request import BatchRequest
from costserve.run.broker_watch import require_broker
from costserve.run.leftovers import driver_alive, stop_leftovers
from costserve.run.local import execute_local
from costserve.run.prepare import finish_preparation, shard_jobs
from costserve.store.run_state import Event, RunState
from costserve.store.runs import RunStore
from solver.plan import Job

MIN_DEADLINE_S = 900.0  # less than this left: ask for a new deadline rather than plan an impossible fleet


def resume_run(run: RunStore, broker: str | None, budget: float | None = None, deadline_s: float | None = None) -> int:
    """Finish `run`; `broker` is the URL again if it used one, `budget` ($) a new total, `deadline_s` (SkyPilot runs)
    the time from now. Returns the exit code; RunStateError when the run cannot be resumed."""
    if run.ended() is RunState.FINISHED:
        say(f"run {run.id} already finished (`costserve results {run.id}`)")
        return 0
    if (pid := driver_alive(run)) is not None:
        raise RunStateError(f"run {run.id} is still running (driver pid {pid}); `costserve cancel {run.id}` stops it")
    request = run.request()
    if request is None or run.dry_run:
        raise RunStateError(
            f"run {run.id} cannot be resumed: it has no run settings (a --dry-run, or a run from an older costserve)"
        )
    require_broker(broker)
    run.claim_driver()
    finish_preparation(run, request, load_settings().default_max_tokens)
    if request.backend == "sky":
        return resume_sky_run(run, request, broker, budget, deadline_s)
    stop_leftovers(run)
    run.close_dangling_fleet()
    done, total = run.results_done(), run.input_info()["jobs"]
    run.event(Event.RESUMED, f"{done}/{total} jobs had results")
    say(f"resuming run {run.id}: {done}/{total} jobs already have results")
    return execute_local(run, broker, budget)


def stop_sky_leftovers(store: RunStore) -> list[str]:
    """`sky down` every cluster of the run that SkyPilot still lists; returns their names."""
    from deploy.sky_fleet import SkyFleet, cluster_name

    fleet = SkyFleet(store.id, store.dir / "logs")
    names = [cluster_name(store.id, q) for q in sorted({row.group for row in store.fleet()})]
    alive = sorted(fleet.statuses(names))
    for name in alive:
        fleet.forget(name)
    return alive


def unfinished_jobs(store: RunStore) -> list[Job]:
    """Every job of the run's shards that has no result yet, once each, in shard order."""
    from costserve.store.results import done_ids, results_db
    from costserve.store.shard_files import read_shard

    results = results_db(store.dir)
    done = done_ids(results)
    results.close()
    jobs: dict[str, Job] = {}  # a job re-sharded by an earlier resume is in two shard files: take it once
    for sid in (s.shard_id for s in store.shards()):
        for job in read_shard(store.dir, sid):
            if job.custom_id not in done:
                jobs.setdefault(job.custom_id, job)
    return list(jobs.values())


def _remaining_s(store: RunStore, request: BatchRequest, deadline_s: float | None) -> float:
    """Seconds this stretch may take: `deadline_s` when given, else what is left of the run's deadline."""
    if deadline_s is not None:
        return deadline_s
    remaining_s = request.deadline_s - (time.time() - store.created())
    if remaining_s < MIN_DEADLINE_S:
        raise RunStateError(
            f"run {store.id}: only {format_duration(max(0.0, remaining_s))} of its deadline is left; "
            f"`costserve resume {store.id} --deadline 2h` gives it more"
        )
    return remaining_s


def resume_sky_run(
    store: RunStore, request: BatchRequest, broker: str | None, budget: float | None, deadline_s: float | None
) -> int:
    """Resume a dead SkyPilot run (see the module docstring); the exit code."""
    from costserve.errors import PlanningError
    from costserve.planning.batch import replan_jobs
    from costserve.planning.offerings import current_offerings
    from costserve.run.end import finish_run
    from costserve.run.sky import operate_fleet
    from costserve.run.sky_backend import SkyLaunch
    from costserve.store.results import results_db

    budget = budget if budget is not None else request.budget
    remaining_s = _remaining_s(store, request, deadline_s)
    with step("stopping the clusters the dead driver left (sky down)..."):
        left = stop_sky_leftovers(store)
    store.close_dangling_fleet()
    if left:
        say(f"stopped {len(left)} leftover cluster(s): {', '.join(left)}")
    jobs = unfinished_jobs(store)
    total = store.input_info()["jobs"]
    store.event(Event.RESUMED, f"{total - len(jobs)}/{total} jobs had results")
    say(f"resuming run {store.id}: {total - len(jobs)}/{total} jobs already have results")
    if not jobs:
        return finish_run(
            store, results_db(store.dir), request.results_path, total, None, errors_out=request.errors_path
        )
    spent = store.spend()
    if budget is not None and budget - spent <= 0:
        raise RunStateError(
            f"run {store.id} has spent ${spent:.2f} of its ${budget:.2f} budget; "
            f"`costserve resume {store.id} --budget MORE`"
        )
    plan = store.plan()
    assert plan is not None, "a SkyPilot run always has a plan"
    offerings, gpus, _ = current_offerings()
    try:
        new = replan_jobs(
            jobs, request, plan.model, offerings, gpus, remaining_s, None if budget is None else budget - spent
        )
    except PlanningError as exc:
        raise RunStateError(f"run {store.id}: no fleet for the {len(jobs)} jobs left: {exc}") from None
    first = len(plan.groups)
    plan.groups.extend(new.groups)
    store.write_json("plan.json", plan.model_dump_json(indent=2))
    say(
        f"re-planned {len(jobs)} job(s): {', '.join(f'{g.count}x {g.instance_type}' for g in new.groups)}, "
        f"predicted ${new.cost:.2f}"
    )
    assigner = GroupAssigner(new.groups, class_counts(jobs))
    shard_jobs(store, jobs, lambda job: f"g{first + assigner.group_of(job)}", request.shard_size)
    return operate_fleet(store, SkyLaunch(request, plan, first, broker, offerings, gpus, remaining_s, budget))
