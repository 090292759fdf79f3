"""The driver's deadline steering: it compares measured progress with the deadline, not only lost groups.

Every STEER_CHECK_S the backend measures each group's pace (jobs left, jobs/s) and `DeadlineSteer.check` asks
solver/steering.py whether every job finishes by the deadline at the plan's confidence. When some will not, it asks the
backend to add capacity for those jobs — the SkyPilot backend re-plans them on new groups within the budget left —
and records what it measured and what it added (a `steered` event, in the report). When no capacity can be added (the
local backend, or nothing fits the budget and time left), it says once, early, that the deadline will be missed and
by about how much (a `deadline miss` event).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from costserve.durations import format_duration
from costserve.notices import say, warn
from costserve.store.run_state import Event
from costserve.store.runs import RunStore
from solver.steering import STEER_CHECK_S, Pace, verdict

# late jobs per group, why, and the paces measured -> what was added (one line) or None when nothing could be
AddCapacity = Callable[[dict[str, float], str, list[Pace]], "str | None"]


@dataclass
class DeadlineSteer:
    """Steers one run to `deadline_at` (unix s) at quantile `z` of its plan's confidence; `add` adds capacity (None:
    this backend cannot)."""

    store: RunStore
    deadline_at: float
    z: float
    add: AddCapacity | None = None
    last_check: float = 0.0
    warned: bool = False

    def check(self, paces: list[Pace], now: float) -> None:
        """At most every STEER_CHECK_S: add capacity for the jobs that would finish late, or say once that the deadline
        will be missed."""
        if now - self.last_check < STEER_CHECK_S:
            return
        self.last_check = now
        found = verdict(paces, now, self.deadline_at, self.z)
        if not found.late_jobs:
            return
        measured = measured_text(paces)
        late = sum(found.late_jobs.values())
        why = f"measured {measured}: {late:,.0f} job(s) would finish after the deadline"
        if self.add is not None and (added := self.add(found.late_jobs, why, paces)) is not None:
            self.store.event(Event.STEERED, f"{why}; {added}")
            say(f"steering to the deadline: {why}; {added}")
            return
        if self.warned:
            return
        self.warned = True
        by = f"by about {format_duration(found.miss_s)}" if found.finish is not None else f"({late:,.0f} job(s) late)"
        line = f"the deadline will be missed {by}: {why}" + (
            "" if self.add is not None else "; this backend cannot add capacity"
        )
        self.store.event(Event.DEADLINE_MISS, line)
        warn(line)


def measured_text(paces: list[Pace]) -> str:
    """`g0 2.10 jobs/s, 4,000 left; g1 not measured yet`."""
    return "; ".join(
        f"{p.name} {p.jobs_per_s:.2f} jobs/s, {p.jobs_left:,.0f} left" if p.jobs_per_s else f"{p.name} not measured yet"
        for p in paces
    )


def steer_for(store: RunStore, add: AddCapacity | None) -> DeadlineSteer | None:
    """The steering of a run from its request and plan (deadline from the run's creation; the plan's confidence), or
    None for a run without either."""
    from solver.uncertainty import z_of

    request, plan = store.request(), store.plan()
    if request is None or plan is None:
        return None
    confidence = plan.outlook.confidence if plan.outlook is not None and plan.outlook.confidence else request.confidence
    return DeadlineSteer(store, store.created() + request.deadline_s, z_of(confidence), add)
