"""Steering a run to its deadline: from each group's measured rate, when the run will finish and which jobs will not
finish in time. The driver (costserve/run/steer.py) and the deadline simulator (bench/deadline_sim.py) both decide
with these functions.

A group's measured rate (jobs/s over all its instances) is taken at the plan's confidence: e^(−z·σ) of the measured
value, σ = MEASURED_LOG_SPREAD. Jobs a group cannot finish before the deadline at that rate are its shortfall; the
driver re-plans them on added capacity (within the budget left) or, when it cannot, says once by how much the run will
miss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from solver.uncertainty import MEASURED_LOG_SPREAD

STEER_CHECK_S = 60.0  # how often the driver compares progress with the deadline (s)
MEASURED_MIN_JOBS = 64  # jobs a group must have finished before its rate is trusted
# A group is late only when its shortfall is at least this share of its queue (and MEASURED_MIN_JOBS): a measured rate
# wobbles a little from one check to the next, and each added group pays a start-up, so slivers are not chased.
LATE_SHARE = 0.01


@dataclass(frozen=True)
class Pace:
    """A running group as measured: `jobs_left` on its queue and `jobs_per_s` over all its instances (None: too few
    jobs done to tell yet)."""

    name: str
    jobs_left: float
    jobs_per_s: float | None


def cautious_rate(pace: Pace, z: float) -> float:
    """The group's measured rate (jobs/s) at the confidence's quantile below the measurement."""
    return (pace.jobs_per_s or 0.0) * math.exp(-z * MEASURED_LOG_SPREAD)


def finish_at(pace: Pace, now: float, z: float) -> float | None:
    """When (s, on `now`'s clock) the group finishes its queue at its cautious rate; None when not measured yet."""
    if pace.jobs_left <= 0:
        return now
    rate = cautious_rate(pace, z)
    return now + pace.jobs_left / rate if rate > 0 else None


def shortfall(pace: Pace, now: float, deadline: float, z: float) -> float:
    """Jobs of the group's queue that will not be done by `deadline` (same clock as `now`) at its cautious rate; 0 for
    a group not measured yet."""
    if pace.jobs_per_s is None:
        return 0.0
    return max(0.0, pace.jobs_left - cautious_rate(pace, z) * max(0.0, deadline - now))


def budget_for_added(budget: float | None, spent: float, running_per_hour: float, remaining_s: float) -> float | None:
    """What added capacity may cost ($): the budget less what is spent and what the running fleet costs ($/h) until
    the deadline `remaining_s` away; None without a budget."""
    return None if budget is None else budget - spent - running_per_hour * max(0.0, remaining_s) / 3600


@dataclass(frozen=True)
class Verdict:
    """What the measured paces say: the projected finish (s; None until every group with work is measured), the
    shortfall of each group (jobs), and by how much the run misses the deadline (s, 0 when it meets it)."""

    finish: float | None
    late_jobs: dict[str, float]
    miss_s: float


def verdict(paces: list[Pace], now: float, deadline: float, z: float) -> Verdict:
    """Compare the run's measured progress with `deadline` at quantile z (every time on `now`'s clock)."""
    ends = [finish_at(p, now, z) for p in paces if p.jobs_left > 0]
    finish = None if any(e is None for e in ends) else max((e for e in ends if e is not None), default=now)
    late = {
        p.name: n
        for p in paces
        if (n := shortfall(p, now, deadline, z)) >= max(MEASURED_MIN_JOBS, LATE_SHARE * p.jobs_left)
    }
    return Verdict(finish, late, max(0.0, (finish or now) - deadline))
