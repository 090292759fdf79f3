"""Baselines: the same fleet MILP over restricted candidate sets, so costserve ≤ each by construction.

(a) `single-16bit`: one offering type, every layer at 16 bits (what people run by hand).
(b) `melange-16bit`: mixed offering types, 16 bits, whole-model replicas (Mélange).
(c) `uniform-quant`: one offering type, one bit-width for all layers: the lowest that meets
    the quality target.
None of them may use the partition ILP's mixed-bit or pipelined configurations.
"""

from __future__ import annotations

from dataclasses import dataclass

from solver.fleet import FleetProblem, FleetSolution, Infeasible, solve_fleet

BASELINES = ("single-16bit", "melange-16bit", "uniform-quant")


@dataclass(frozen=True)
class BaselineResult:
    """A baseline's cheapest fleet, or why it has none."""

    name: str
    solution: FleetSolution | None
    reason: str = ""


def solve_baselines(problem: FleetProblem) -> list[BaselineResult]:
    """Solve each baseline under the problem's deadline, budget and availability."""
    whole = [c for c in problem.candidates if c.whole_model_uniform]
    sixteen = [c for c in whole if c.bits == 16]
    lowest = min((c.bits for c in whole), default=16)
    uniform = [c for c in whole if c.bits == lowest]
    problems = {
        "single-16bit": (sixteen, True),
        "melange-16bit": (sixteen, False),
        "uniform-quant": (uniform, True),
    }
    results = []
    for name in BASELINES:
        subset, single = problems[name]
        try:
            solution = solve_fleet(problem.with_(candidates=subset), single_offering=single)
            results.append(BaselineResult(name, solution))
        except Infeasible:
            results.append(BaselineResult(name, None, "infeasible under the same deadline, budget and availability"))
    return results
