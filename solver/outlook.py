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


def draw_outcomes(risks: list[GroupRisk], draws: int = DRAWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(makespan s, cost $) of `draws` draws of the fleet."""
    rng = np.random.default_rng(seed)
    shared = {s: rng.standard_normal(draws) for s in sorted({r.source for r in risks})}
    makespan, cost = np.zeros(draws), np.zeros(draws)
    for r in risks:
        speed = np.exp(r.rate_spread * shared[r.source])
        startup = r.startup_s * np.exp(STARTUP_LOG_SPREAD * rng.standard_normal(draws)) if r.startup_s > 0 else np.zeros(draws)
        work_wall = r.work_s / (r.count * speed)
        losses = rng.poisson(r.losses_per_hour * (r.startup_s + work_wall) / 3600) if r.losses_per_hour else 0
        finish = startup * (1 + losses) + work_wall
        makespan = np.maximum(makespan, finish)
        cost += r.price_per_hour / 3600 * (r.count * startup * (1 + losses) + r.work_s / speed)
    return makespan, cost


def fleet_outlook(risks: list[GroupRisk], deadline_s: float, confidence: float | None, spread: str = "") -> Outlook:
    """The outlook of a fleet against `deadline_s` (s): expected and quantile makespan (s) and cost ($), slack (s) and
    P(meet); quantiles at `confidence`, or DISPLAY_QUANTILE for a plan made without one."""
    makespan, cost = draw_outcomes(risks)
    q = confidence if confidence is not None else DISPLAY_QUANTILE
    at_q = float(np.quantile(makespan, q))
    return Outlook(
        confidence=confidence, quantile=q, makespan_expected_s=round(float(makespan.mean()), 1),
        makespan_quantile_s=round(at_q, 1), cost_expected=round(float(cost.mean()), 4),
        cost_quantile=round(float(np.quantile(cost, q)), 4), slack_s=round(deadline_s - at_q, 1),
        p_meet=round(float((makespan <= deadline_s).mean()), 3), spread=spread,
    )
