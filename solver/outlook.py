"""A fleet's makespan and cost as distributions: Monte Carlo over the spread of every prediction (solver/uncertainty.py).

Groups whose rates come from the same source (GPU, precision, provenance) share one draw of its error — a roofline
that is 20% optimistic for H100 FP8 is so for every H100 FP8 group — and the rest are independent. A spot group is
lost a Poisson number of times (SPOT_LOSSES_PER_HOUR over its run); each loss costs a replacement's start-up, in time
and in money. Seeded: the same plan always states the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solver.plan_outlook import Outlook
from solver.uncertainty import STARTUP_LOG_SPREAD

DRAWS = 4000  # Monte Carlo draws: P(meet) to ±0.5 points (binomial σ at 0.9)
DISPLAY_QUANTILE = 0.9  # the quantile an open-loop plan (no --confidence) is shown at


@dataclass(frozen=True)
class GroupRisk:
    """One fleet group as the outlook sees it: `work_s` instance-seconds at the predicted rates (all its instances),
    start-up (s), $/h per instance, σ of ln(true ÷ predicted rate), spot losses an hour (0 on demand)."""

    source: str  # groups with the same source share one draw of their rate error
    count: int
    work_s: float
    startup_s: float
    price_per_hour: float
    rate_spread: float
    losses_per_hour: float = 0.0
    jobs: float = 0.0  # the jobs it was planned to run (0: unknown; it then ends on its own work alone)


def draw_outcomes(risks: list[GroupRisk], draws: int = DRAWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(makespan s, cost $) of `draws` draws of the fleet.

    The groups pool their jobs as the driver's rebalancing makes them (run/shard_window.py: a group that has finished
    its own takes waiting jobs of a busier one), so the fleet ends when its groups together have done every job: the
    T with Σ_g jobs/s_g · (T − start_g)⁺ = Σ_g jobs_g. Every instance is billed until then (the fleet goes down at
    the end of the run); a spot loss adds a replacement's start-up to its group's start and bill."""
    rng = np.random.default_rng(seed)
    shared = {s: rng.standard_normal(draws) for s in sorted({r.source for r in risks})}
    starts, rates, alone = [], [], []
    for r in risks:
        speed = np.exp(r.rate_spread * shared[r.source])
        startup = (
            r.startup_s * np.exp(STARTUP_LOG_SPREAD * rng.standard_normal(draws))
            if r.startup_s > 0
            else np.zeros(draws)
        )
        work_wall = r.work_s / (r.count * speed)
        losses = rng.poisson(r.losses_per_hour * (r.startup_s + work_wall) / 3600) if r.losses_per_hour else 0
        starts.append(startup * (1 + losses))
        rates.append(r.jobs / work_wall if r.jobs > 0 else np.zeros(draws))  # jobs/s of the whole group once started
        alone.append(starts[-1] + work_wall)
    total = sum(r.jobs for r in risks)
    low, high = np.min(starts, axis=0), np.max(alone, axis=0)  # pooled, the fleet ends no later than its last group
    for _ in range(40):  # bisection on T, every draw at once
        mid = (low + high) / 2
        done = sum(rate * np.clip(mid - start, 0, None) for rate, start in zip(rates, starts))
        short = done < total
        low, high = np.where(short, mid, low), np.where(short, high, mid)
    makespan = high if total > 0 else np.max(alone, axis=0)
    cost = sum(r.price_per_hour / 3600 * r.count * makespan for r in risks)
    return makespan, cost


def fleet_outlook(risks: list[GroupRisk], deadline_s: float, confidence: float | None, spread: str = "") -> Outlook:
    """The outlook of a fleet against `deadline_s` (s): expected and quantile makespan (s) and cost ($), slack (s) and
    P(meet); quantiles at `confidence`, or DISPLAY_QUANTILE for a plan made without one."""
    makespan, cost = draw_outcomes(risks)
    q = confidence if confidence is not None else DISPLAY_QUANTILE
    at_q = float(np.quantile(makespan, q))
    return Outlook(
        confidence=confidence,
        quantile=q,
        makespan_expected_s=round(float(makespan.mean()), 1),
        makespan_quantile_s=round(at_q, 1),
        cost_expected=round(float(cost.mean()), 4),
        cost_quantile=round(float(np.quantile(cost, q)), 4),
        slack_s=round(deadline_s - at_q, 1),
        p_meet=round(float((makespan <= deadline_s).mean()), 3),
        spread=spread,
    )
