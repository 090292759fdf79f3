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

from dataclasses import dataclass

from solver.fleet import FleetProblem, FleetSolution, Infeasible, solve_fleet

BASELINES = ("single-type-16bit", "single-type-best-precision", "melange")


@dataclass(frozen=True)
class BaselineResult:
    """A baseline's cheapest fleet, or why it has none."""

    name: str
    solution: FleetSolution | None
    reason: str = ""


def solve_baselines(problem: FleetProblem) -> list[BaselineResult]:
    """Solve each baseline under the problem's deadline, budget and availability."""
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
            results.append(BaselineResult(name, None, "infeasible under the same deadline, budget and availability"))
    return results
