"""`costserve submit --backend sky`: one SkyPilot cluster per fleet group, a Redis head node, shards, results, down.

The run is created and sharded (one queue per group, jobs split by the plan's class shares)
before anything launches. Each shard travels inline in its Celery task and its outputs come
back through the broker (`sky_backend.SkyBackend`); the run store, not the broker, is what
is done. Every cluster the run launched is torn down when it ends, however it ends.
"""

from __future__ import annotations

from costserve.notices import say
from costserve.request import BatchRequest
from costserve.run.drive import drive
from costserve.run.sky_backend import SkyBackend, SkyLaunch
from costserve.store.runs import RunStore
from solver.plan import Plan


def launch_sky(store: RunStore, request: BatchRequest, plan: Plan, broker: str | None) -> int:
    """Run a created, sharded run on SkyPilot: every group of `plan` and a broker unless `broker`; the exit code."""
    from costserve.planning.offerings import current_offerings
    from costserve.run.sky_tasks import require_skypilot

    require_skypilot()
    offerings, gpus, _ = current_offerings()
    say(
        f"run {store.id}: {store.input_info()['jobs']} jobs on {len(plan.groups)} fleet group(s); "
        f"task files in {store.dir / 'sky'}"
    )
    return operate_fleet(store, SkyLaunch(request, plan, 0, broker, offerings, gpus, plan.deadline_s, request.budget))


def operate_fleet(store: RunStore, launch: SkyLaunch) -> int:
    """Launch what `launch` names, queue its shards, follow until done or stopped, tear every launched cluster down,
    write results and report; the exit code."""
    from costserve.store.results import results_db

    results = results_db(store.dir)
    return drive(store, results, SkyBackend(store, results, launch), launch.request, launch.budget)
