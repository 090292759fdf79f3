"""Plan at a confidence: the fleet MILP over candidates whose rates are taken at a quantile below their prediction.

A candidate with rate spread σ (solver/uncertainty.py) is costed at rate × e^(−zσ) and start-up × e^(z·σ_startup),
z the normal quantile of the confidence, so its makespan at that quantile fits the deadline and its cost there the
budget. A fleet of several groups meets the deadline only if all of them do, and spot groups can be lost, so the
fleet's own P(meet) (solver/outlook.py) is checked, and z raised by Z_STEP until it reaches the confidence (at most
MAX_RAISES times; the plan then states the P(meet) it has). The groups keep their predicted (median) rates: the plan
shows what is expected and, in its outlook, what is promised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from solver.candidates import Candidate
from solver.fleet import FleetGroup, FleetProblem, FleetSolution, Infeasible, solve_fleet
from solver.outlook import GroupRisk, fleet_outlook
from solver.plan_outlook import Outlook
from solver.uncertainty import SPOT_LOSSES_PER_HOUR, STARTUP_LOG_SPREAD, spread_words, z_of
from solver.workload import Workload

DEFAULT_CONFIDENCE = 0.9
Z_STEP = 0.4
MAX_RAISES = 5


def derated(c: Candidate, z: float) -> Candidate:
    """`c` with its rates (requests/s) at e^(−z·σ) of the prediction and its start-up (s) at e^(z·σ_startup)."""
    down = math.exp(-z * c.rate_spread)
    return replace(
        c,
        requests_per_s=tuple(r * down for r in c.requests_per_s),
        startup_seconds=c.startup_seconds * math.exp(z * STARTUP_LOG_SPREAD),
    )


def group_risk(g: FleetGroup, workload: Workload) -> GroupRisk:
    """A fleet group as the outlook sees it (its jobs: its share of each class of `workload`)."""
    c = g.candidate
    return GroupRisk(
        source=c.rate_source or f"{c.gpu} {c.bits}-bit",
        count=g.count,
        work_s=g.busy_seconds,
        startup_s=c.startup_seconds,
        price_per_hour=c.price_per_hour,
        rate_spread=c.rate_spread,
        losses_per_hour=SPOT_LOSSES_PER_HOUR if c.spot else 0.0,
        jobs=sum(k.count * s for k, s in zip(workload.classes, g.shares)),
    )


def spread_text(candidates: list[Candidate]) -> str:
    """What a fleet's spread rests on, e.g. `roofline ±18%, spot 0.34 losses/h`."""
    parts = sorted({spread_words((c.rate_source or "roofline").split(" ", 2)[-1], c.rate_spread) for c in candidates})
    if any(c.spot for c in candidates):
        parts.append(f"spot {SPOT_LOSSES_PER_HOUR:.2f} losses/h")
    return ", ".join(parts)


def derated_problem(problem: FleetProblem, confidence: float | None, z: float | None = None) -> FleetProblem:
    """`problem` with every candidate taken at quantile `z`, by default the confidence's own (unchanged for None)."""
    if confidence is None:
        return problem
    return problem.with_(candidates=[derated(c, z_of(confidence) if z is None else z) for c in problem.candidates])


def outlook_of(solution: FleetSolution, problem: FleetProblem, confidence: float | None) -> Outlook:
    """The outlook of a fleet (at its candidates' predicted rates) against the problem's deadline (s)."""
    return fleet_outlook(
        [group_risk(g, problem.workload) for g in solution.groups],
        problem.deadline_s,
        confidence,
        spread_text([g.candidate for g in solution.groups]),
    )


def at_predicted_rates(
    solution: FleetSolution, originals: dict[int, Candidate], problem: FleetProblem
) -> FleetSolution:
    """A solution over derated candidates restated at their predicted rates: the same counts and shares, the work
    (instance-seconds) and cost ($) the predictions give."""
    classes = problem.workload.classes
    groups = []
    for g in solution.groups:
        c = originals[id(g.candidate)]
        busy = sum(k.count * s / r for k, s, r in zip(classes, g.shares, c.requests_per_s) if s and r > 0)
        groups.append(FleetGroup(c, g.count, g.shares, busy))
    cost = sum(
        g.candidate.price_per_hour / 3600 * (g.count * g.candidate.startup_seconds + g.busy_seconds) for g in groups
    )
    return FleetSolution(cost, tuple(groups))


def solve_at_confidence(
    problem: FleetProblem, confidence: float | None, solve: Callable[[FleetProblem], FleetSolution] = solve_fleet
) -> tuple[FleetSolution, FleetProblem, Outlook]:
    """(the fleet at its predicted rates, the derated problem it was solved as — baselines are planned on it —, its
    outlook). `confidence` None: today's open-loop plan on the deadline. Raises Infeasible when no fleet fits even
    at the confidence's own quantile."""
    if confidence is None:
        best = solve(problem)
        return best, problem, outlook_of(best, problem, None)
    z = z_of(confidence)
    found: tuple[FleetSolution, FleetProblem, Outlook] | None = None
    for _ in range(MAX_RAISES + 1):
        asked = derated_problem(problem, confidence, z)
        try:
            solution = solve(asked)
        except Infeasible:
            if found is None:
                raise
            break  # a wider margin does not fit: keep the last fleet, stating its P(meet)
        point = at_predicted_rates(solution, {id(d): c for d, c in zip(asked.candidates, problem.candidates)}, problem)
        look = outlook_of(point, problem, confidence)
        # the budget held the fleet's cost at the quantile's rates: the promise is the higher of that and the draws'
        look = look.model_copy(update={"cost_quantile": round(max(look.cost_quantile, solution.cost), 4)})
        found = (point, asked, look)
        if found[2].p_meet >= confidence:
            break
        z += Z_STEP
    assert found is not None
    return found
