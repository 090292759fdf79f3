"""What the SkyPilot backend gives the deadline steering (run/steer.py): each group's pace, measured from its shard
runs since its instances came up (less the start-up its plan counted), and added capacity for late jobs — their
waiting shards re-planned on new groups by the GroupReplacer, within the budget left."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from costserve.store.results import queue_run_stats
from solver.steering import MEASURED_MIN_JOBS, Pace

if TYPE_CHECKING:
    from solver.planner import Calibrate


def group_paces(backend: Any, now: float) -> list[Pace]:
    """Per running group (queue): jobs left in its window and its measured jobs/s (None until MEASURED_MIN_JOBS)."""
    shard = backend.spec.request.shard_size
    done = queue_run_stats(backend.results)
    up = {row.group: row for row in backend.store.fleet() if row.down is None}
    out = []
    for queue, window in backend.windows.items():
        row = up.get(queue)
        jobs_done = done.get(queue, (0, 0, None))[0] * shard
        working_s = now - row.up - backend.spec.plan.groups[int(queue[1:])].startup_s if row else 0.0
        rate = jobs_done / working_s if jobs_done >= MEASURED_MIN_JOBS and working_s > 0 else None
        out.append(Pace(queue, len(window) * shard, rate))
    return out


def add_capacity(backend: Any, late: dict[str, float], why: str, measured: Calibrate | None = None) -> str | None:
    """Move the late jobs' waiting shards of each group to new groups re-planned for them (GroupReplacer.add, with the
    running groups' `measured` rates); None, with every shard back where it was, when nothing fits the budget and
    time left."""
    if backend.replacer is None or not backend.may_add_capacity:
        return None
    shard = backend.spec.request.shard_size
    taken: dict[str, list[str]] = {}
    for queue, jobs in late.items():
        window = backend.windows.get(queue)
        n = min(math.ceil(jobs / shard), len(window.waiting)) if window is not None else 0
        taken[queue] = [window.waiting.pop() for _ in range(n)] if window is not None else []
    shards = [s for group in taken.values() for s in group]
    added = backend.replacer.add(shards, why, backend.windows, measured) if shards else None
    if added is None:
        for queue, group in taken.items():
            backend.windows[queue].waiting.extend(reversed(group))
    return added


def planned_jobs_per_s(group: Any, plan: Any) -> float:
    """A plan group's jobs/s over all its instances at the run's class mix (the classes it serves, weighted by the
    plan's counts): count ÷ Σ_k f_k / r_k."""
    counts = {k.name: k.count for k in plan.workload}
    served = {k: counts.get(k, 0) for k, share in group.class_shares.items() if share > 0}
    total = sum(served.values())
    if not total:
        return 0.0
    per_job_s = sum(n / total / group.requests_per_s[k] for k, n in served.items() if group.requests_per_s.get(k))
    return group.count / per_job_s if per_job_s > 0 else 0.0


def measured_calibration(plan: Any, paces: list[Pace]) -> Calibrate:
    """The running groups' measured rates as the planner's calibration: per hardware and replica, the work factor
    (modelled ÷ measured rate, on top of the one the plan applied), the plan's start-up, spread MEASURED_LOG_SPREAD."""
    from solver.plan import hardware_signature
    from solver.uncertainty import MEASURED_LOG_SPREAD

    known: dict[tuple[str, str], tuple[float, float, str, float]] = {}
    for pace in paces:
        group = plan.groups[int(pace.name[1:])]
        planned = planned_jobs_per_s(group, plan)
        if pace.jobs_per_s and planned > 0:
            key = (hardware_signature(group.gpu, group.gpus_per_instance, group.instance_type), group.replica.summary())
            factor = group.work_factor * planned / pace.jobs_per_s
            known[key] = (
                group.startup_s,
                factor,
                f"measured in this run ({pace.jobs_per_s:.2f} jobs/s)",
                MEASURED_LOG_SPREAD,
            )
    return lambda hardware, replica: known.get((hardware, replica))
