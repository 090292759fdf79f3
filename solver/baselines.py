"""Baselines: the same fleet MILP over restricted candidate sets, so costserve ≤ each by construction.

(a) `single-type-16bit`: one GPU type, every layer at 16 bits, in any region or cloud the
    request allows: what `sky launch --gpus H100:8` with vLLM gives a user who picks the
    cheapest GPU type by hand.
(b) `single-type-best-precision`: one GPU type, the whole model at one precision — the cheapest
    of those its engine runs and the quality target allows (bf16 or FP8 with vLLM on GPUs; 16, 8 or 4
    bits on CPUs): the same precision menu as costserve's own plan.
(c) `melange`: mixed GPU types, 16 bits, whole-model replicas (Mélange, Jiang et al. 2025).
None of them may use the partition ILP's mixed-bit or pipelined configurations, nor CPU–GPU
hybrid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from solver.baseline_notes import fleet_difference, fleet_text, nearest_feasible, same_as_earlier
from solver.fleet import FleetGroup, FleetProblem, FleetSolution, Infeasible, solve_fleet
from solver.plan import BaselinePlan, FleetGroupPlan

BASELINES = ("single-type-16bit", "single-type-best-precision", "melange")


@dataclass(frozen=True)
class BaselineResult:
    """A baseline's cheapest fleet, or why it has none."""

    name: str
    solution: FleetSolution | None
    reason: str = ""


def solve_baselines(problem: FleetProblem) -> list[BaselineResult]:
    """Solve each baseline under the problem's deadline, budget and availability; one with no fleet says the cheapest
    point where it gets one and the knob that reaches it (solver/baseline_notes.nearest_feasible)."""
    whole = [c for c in problem.candidates if c.whole_model_uniform]  # already within the quality target
    sixteen = [c for c in whole if c.sixteen_bit]
    problems = {
        "single-type-16bit": (sixteen, True),
        "single-type-best-precision": (whole, True),
        "melange": (sixteen, False),
    }
    results = []
    for name in BASELINES:
        subset, single = problems[name]
        try:
            solution = solve_fleet(problem.with_(candidates=subset), one_gpu_type=single)
            results.append(BaselineResult(name, solution))
        except Infeasible:
            nearest = nearest_feasible(problem.with_(candidates=subset), one_gpu_type=single)
            results.append(BaselineResult(name, None, f"infeasible; {nearest}"))
    return results


def baseline_plans(
    results: list[BaselineResult],
    best: FleetSolution,
    ours: list[FleetGroupPlan],
    group_plans: Callable[[Sequence[FleetGroup]], list[FleetGroupPlan]],
) -> list[BaselinePlan]:
    """Each baseline beside costserve's fleet `ours` (cost $ `best.cost`): what it rents, at which bits, how that
    differs, what costserve saves (its cost ÷ costserve's); one with no fleet carries its nearest feasible point."""
    out = []
    for result in results:
        if result.solution is None:
            out.append(BaselinePlan(name=result.name, cost=None, makespan_s=None, note=result.reason))
            continue
        # every baseline is a restriction of the same MILP, so never cheaper at the rates it was solved at; restated
        # at the predicted rates (solver/margin.py) one whose GPUs' predictions are surer may come out a little cheaper
        cost = result.solution.cost
        theirs = group_plans(result.solution.groups)
        rents, precision = fleet_text(theirs)
        out.append(
            BaselinePlan(
                name=result.name,
                cost=round(cost, 6),
                makespan_s=round(result.solution.makespan_seconds, 1),
                savings=cost / best.cost if best.cost > 0 else None,
                fleet=rents,
                precision=precision,
                differs=fleet_difference(ours, theirs),
            )
        )
    return same_as_earlier(out, round(best.cost, 6), round(best.makespan_seconds, 1))
