"""What the SkyPilot backend gives the deadline steering (run/steer.py): each group's pace, measured from its shard
runs since its instances came up (less the start-up its plan counted), and added capacity for late jobs — their
waiting shards re-planned on new groups by the GroupReplacer, within the budget left."""

from __future__ import annotations

import math
from typing import Any

from costserve.store.results import queue_run_stats
from solver.steering import MEASURED_MIN_JOBS, Pace


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


def add_capacity(backend: Any, late: dict[str, float], why: str) -> str | None:
    """Move the late jobs' waiting shards of each group to new groups re-planned for them (GroupReplacer.add); None,
    with every shard back where it was, when nothing fits the budget and time left."""
    if backend.replacer is None or not backend.may_add_capacity:
        return None
    shard = backend.spec.request.shard_size
    taken: dict[str, list[str]] = {}
    for queue, jobs in late.items():
        window = backend.windows.get(queue)
        n = min(math.ceil(jobs / shard), len(window.waiting)) if window is not None else 0
        taken[queue] = [window.waiting.pop() for _ in range(n)] if window is not None else []
    shards = [s for group in taken.values() for s in group]
    added = backend.replacer.add(shards, why, backend.windows) if shards else None
    if added is None:
        for queue, group in taken.items():
            backend.windows[queue].waiting.extend(reversed(group))
    return added
