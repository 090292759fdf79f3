"""Cheapest heterogeneous fleet (Jiang et al., ICML 2025; Mélange): the MILP of solver/fleet_model.py, solved by HiGHS.

The problem and its answer are plain dataclasses; minimising the makespan under a budget is a
bisection on the deadline over the same model (the paper's Algorithm 1).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import pyomo.environ as pyo

from costserve.durations import format_duration, format_money
from costserve.errors import PlanningError
from solver.candidates import Candidate
from solver.fleet_model import FleetProblem, build_fleet_model, class_work
from solver.highs_solve import NoSolution, solve_linear_model

__all__ = [
    "FleetGroup",
    "FleetProblem",
    "FleetSolution",
    "Infeasible",
    "fastest_within_budget",
    "prune_dominated",
    "solve_fleet",
]


@dataclass(frozen=True)
class FleetGroup:
    """`count` instances of one candidate and the share of each class they serve."""

    candidate: Candidate
    count: int
    shares: tuple[float, ...]  # fraction of each workload class
    busy_seconds: float  # instance-seconds of work (all instances together)

    @property
    def finish_seconds(self) -> float:
        """Wall time until this group is done: startup plus its share of the work per instance."""
        return self.candidate.startup_seconds + self.busy_seconds / self.count


@dataclass(frozen=True)
class FleetSolution:
    """An optimal fleet: cost ($) and makespan (s) as the model predicts them."""

    cost: float
    groups: tuple[FleetGroup, ...]

    @property
    def makespan_seconds(self) -> float:
        return max((g.finish_seconds for g in self.groups), default=0.0)


class Infeasible(PlanningError):
    """No fleet meets the constraints."""


def prune_dominated(candidates: list[Candidate]) -> list[Candidate]:
    """Drop candidates another candidate of the same offering, price, startup and GPUs beats in every class.

    Exact: work assigned to a dominated candidate can move to its dominator, taking no longer
    at no higher price, so some optimum never uses it. Of identical twins the first is kept.
    """
    by_key: dict[tuple, list[int]] = defaultdict(list)
    for i, c in enumerate(candidates):
        by_key[(c.offering, c.price_per_hour, c.startup_seconds, c.gpu, c.gpus_per_instance, c.spot)].append(i)
    keep = []
    for members in by_key.values():
        for i in members:
            ri = candidates[i].requests_per_s
            dominated = any(
                all(a >= b for a, b in zip(candidates[j].requests_per_s, ri))
                and (candidates[j].requests_per_s != ri or j < i)
                for j in members
                if j != i
            )
            if not dominated:
                keep.append(i)
    return [candidates[i] for i in sorted(keep)]


def solve_fleet(problem: FleetProblem, one_gpu_type: bool = False) -> FleetSolution:
    """Solve the fleet MILP with HiGHS (cost in $); raises Infeasible when no fleet fits. `one_gpu_type`: the fleet
    may use one GPU type only (the homogeneous baselines)."""
    if not problem.candidates or not problem.workload.classes:
        raise Infeasible("no candidate configuration" if not problem.candidates else "no jobs")
    candidates = prune_dominated(problem.candidates)
    problem = problem.with_(candidates=candidates)
    served = {k for _, k in class_work(candidates, problem)}
    if len(served) < len(problem.workload.classes):
        raise Infeasible("some requests fit no candidate before the deadline")
    model = build_fleet_model(problem, one_gpu_type)
    try:
        solve_linear_model(model)
    except NoSolution as exc:
        raise Infeasible(str(exc)) from None
    work = model.work
    groups = []
    for i in model.C:
        count = round(model.n[i].value or 0)
        shares = tuple(max(0.0, model.x[i, k].value or 0.0) if (i, k) in work else 0.0 for k in model.K)
        busy = sum(work[i, k] * share for k, share in enumerate(shares) if share)  # W_c: instance-seconds of work
        if count == 0 or busy <= 1e-9:
            continue  # instances without work cost nothing only when startup is free: not part of the plan
        # With free startup, more instances than the work needs are an equally cheap optimum;
        # report the fewest that meet the deadline (same cost).
        needed = math.ceil(busy / (problem.deadline_s - candidates[i].startup_seconds) - 1e-9)
        groups.append(FleetGroup(candidates[i], max(1, min(count, needed)), shares, busy))
    return FleetSolution(float(pyo.value(model.cost)), tuple(groups))


def fastest_within_budget(
    problem: FleetProblem, tolerance_s: float = 60.0, longest_s: float = 30 * 24 * 3600.0
) -> FleetSolution:
    """Minimum-makespan fleet within the problem's budget ($): bisection on the deadline (Algorithm 1)."""
    try:
        best = solve_fleet(problem.with_(deadline_s=longest_s))
    except Infeasible:
        raise Infeasible(
            f"no fleet finishes within {format_duration(longest_s)} for {format_money(problem.budget or 0.0)}"
        ) from None
    low = min(c.startup_seconds for c in problem.candidates)
    high = best.makespan_seconds
    while high - low > tolerance_s:
        mid = (low + high) / 2
        try:
            best = solve_fleet(problem.with_(deadline_s=mid))
            high = min(mid, best.makespan_seconds)
        except Infeasible:
            low = mid
    return best
