"""Cheapest heterogeneous fleet (Jiang et al., ICML 2025; Mélange): a Pyomo MILP solved by HiGHS.

For a batch with deadline D billed per second, a candidate c (an instance type running one
configuration) with n_c instances and assigned work W_c = Σ_k x_ck · N_k / r_ck
(instance-seconds) costs p_c · (n_c · s_c + W_c); the deadline is W_c ≤ n_c · (D − s_c).
Both are linear, so the whole plan is one MILP. Minimising the makespan under a budget is a
bisection on D over the same model (the paper's Algorithm 1).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace

import pyomo.environ as pyo

from solver.candidates import Candidate
from solver.workload import Workload


@dataclass(frozen=True)
class FleetProblem:
    """What one fleet MILP is asked: candidates, the batch, and the limits every fleet must meet.

    `deadline_s` (s); `availability` maps offering -> max instances; `budget` ($, None: no
    budget); `gpu_caps` maps GPU name -> max GPUs across the fleet. `steady`: the batch is a
    steady request rate over `deadline_s` (`plan --melange`), so an instance costs p_c · D
    however busy it is, as in Mélange's ILP; otherwise p_c · (s_c + its share of the work). Baselines, the budget
    bisection and the diagnosis each ask a variant of one problem (`with_`).
    """

    candidates: list[Candidate]
    workload: Workload
    deadline_s: float
    availability: dict[int, int]
    budget: float | None = None
    gpu_caps: dict[str, int] | None = None
    steady: bool = False  # serve a steady load for deadline_s: every instance is paid for all of it (Mélange)

    def with_(self, **changes: object) -> "FleetProblem":
        """The same problem with some fields replaced (e.g. `deadline_s`, `budget`, `candidates`)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def build_fleet_model(problem: FleetProblem, one_gpu_type: bool = False) -> pyo.ConcreteModel:
    """The fleet MILP of `problem`; `one_gpu_type` restricts the fleet to one GPU type, in any of its offerings (every
    region and cloud the problem has): the homogeneous baselines, what `sky launch --gpus H100:8` gives."""
    candidates, workload, deadline_s = problem.candidates, problem.workload, problem.deadline_s
    availability, budget, gpu_caps = problem.availability, problem.budget, problem.gpu_caps
    m = pyo.ConcreteModel("fleet")
    m.C = pyo.Set(initialize=range(len(candidates)))  # candidates c
    m.K = pyo.Set(initialize=range(len(workload.classes)))  # workload classes k
    m.O = pyo.Set(initialize=sorted({c.offering for c in candidates}))  # offerings o

    m.N = pyo.Param(m.K, initialize={k: cls.count for k, cls in enumerate(workload.classes)})  # requests N_k
    m.p = pyo.Param(m.C, initialize={i: c.price_per_hour / 3600 for i, c in enumerate(candidates)})  # $/s p_c
    m.s = pyo.Param(m.C, initialize={i: c.startup_seconds for i, c in enumerate(candidates)})  # startup s_c
    m.r = pyo.Param(m.C, m.K, initialize={(i, k): c.requests_per_s[k] for i, c in enumerate(candidates) for k in m.K})

    usable = {i for i, c in enumerate(candidates) if deadline_s > c.startup_seconds}
    m.n = pyo.Var(m.C, domain=pyo.NonNegativeIntegers, bounds=lambda _, i: (0, availability.get(candidates[i].offering, 0) if i in usable else 0))
    m.x = pyo.Var(m.C, m.K, bounds=lambda _, i, k: (0, 1 if candidates[i].requests_per_s[k] > 0 and i in usable else 0))

    # W_c = Σ_k x_ck · N_k / r_ck : instance-seconds of work on candidate c
    def work(model: pyo.ConcreteModel, i: int) -> pyo.Expression:
        return sum(model.x[i, k] * model.N[k] / model.r[i, k] for k in model.K if model.r[i, k] > 0)

    m.W = pyo.Expression(m.C, rule=work)
    # cost = Σ_c p_c · (n_c · s_c + W_c)
    if problem.steady:  # cost = Σ_c p_c · n_c · D
        m.cost = pyo.Expression(expr=sum(m.p[i] * m.n[i] * deadline_s for i in m.C))
    else:
        m.cost = pyo.Expression(expr=sum(m.p[i] * (m.n[i] * m.s[i] + m.W[i]) for i in m.C))
    m.objective = pyo.Objective(expr=m.cost, sense=pyo.minimize)
    # Σ_c x_ck = 1 : every class is served in full
    m.assigned = pyo.Constraint(m.K, rule=lambda model, k: sum(model.x[i, k] for i in model.C) == 1)
    # W_c ≤ n_c · (D − s_c) : the work fits in the deadline
    m.deadline = pyo.Constraint(m.C, rule=lambda model, i: model.W[i] <= model.n[i] * max(0.0, deadline_s - model.s[i]))
    # Σ_k x_ck ≤ |K| · n_c : a candidate with no instance serves nothing. Implied by the deadline
    # row in exact arithmetic, but when a class's whole work on c is under a second (a tiny batch
    # on a fast GPU), W_c is within HiGHS's feasibility tolerance and the solver may assign work to
    # zero instances. Only those candidates get the row: it costs solve time on big models.
    weak = [i for i in m.C if i in usable and any(0 < m.N[k] / m.r[i, k] < 1.0 for k in m.K if m.r[i, k] > 0)]
    m.WEAK = pyo.Set(initialize=weak)
    m.served_by_instances = pyo.Constraint(m.WEAK, rule=lambda model, i: sum(model.x[i, k] for k in model.K) <= len(model.K) * model.n[i])
    by_offering: dict[int, list[int]] = defaultdict(list)
    by_gpu: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(candidates):
        by_offering[c.offering].append(i)
        by_gpu[c.gpu].append(i)
    # Σ_{c ∈ o} n_c ≤ A_o : availability of each offering
    m.available = pyo.Constraint(m.O, rule=lambda model, o: sum(model.n[i] for i in by_offering[o]) <= availability.get(o, 0))
    if one_gpu_type:
        _restrict_to_one_gpu_type(m, candidates, by_gpu, availability)
    caps = {g: cap for g, cap in (gpu_caps or {}).items() if g in by_gpu}
    m.G = pyo.Set(initialize=sorted(caps))
    # Σ_{c on GPU g} n_c · gpus_c ≤ cap_g : GPUs of a type across the fleet
    m.gpu_cap = pyo.Constraint(
        m.G, rule=lambda model, g: sum(model.n[i] * candidates[i].gpus_per_instance for i in by_gpu[g]) <= caps[g]
    )
    if budget is not None:
        m.budget = pyo.Constraint(expr=m.cost <= budget)  # cost ≤ B
    return m


def _restrict_to_one_gpu_type(m: pyo.ConcreteModel, candidates: list[Candidate], by_gpu: dict[str, list[int]],
                              availability: dict[int, int]) -> None:
    """Add a binary u_g per GPU type, Σ_g u_g ≤ 1, and Σ_{c on g} n_c ≤ (Σ_{o of g} A_o) · u_g."""
    m.T = pyo.Set(initialize=sorted(by_gpu))
    m.u = pyo.Var(m.T, domain=pyo.Binary)  # u_g = 1 for the one GPU type used
    m.one_type = pyo.Constraint(expr=sum(m.u[g] for g in m.T) <= 1)
    type_availability = {g: sum(availability.get(o, 0) for o in {candidates[i].offering for i in by_gpu[g]})
                         for g in by_gpu}
    m.only_chosen = pyo.Constraint(
        m.T, rule=lambda model, g: sum(model.n[i] for i in by_gpu[g]) <= type_availability[g] * model.u[g]
    )


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


class Infeasible(Exception):
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
                all(a >= b for a, b in zip(candidates[j].requests_per_s, ri)) and (candidates[j].requests_per_s != ri or j < i)
                for j in members if j != i
            )
            if not dominated:
                keep.append(i)
    return [candidates[i] for i in sorted(keep)]


def solve_fleet(problem: FleetProblem, one_gpu_type: bool = False) -> FleetSolution:
    """Solve the fleet MILP with HiGHS; raises Infeasible when no fleet fits."""
    if not problem.candidates or not problem.workload.classes:
        raise Infeasible("no candidate configuration" if not problem.candidates else "no jobs")
    candidates = prune_dominated(problem.candidates)
    deadline_s = problem.deadline_s
    model = build_fleet_model(problem.with_(candidates=candidates), one_gpu_type)
    result = pyo.SolverFactory("appsi_highs").solve(model, load_solutions=False)
    if result.solver.termination_condition != pyo.TerminationCondition.optimal:
        raise Infeasible(str(result.solver.termination_condition))
    model.solutions.load_from(result)
    groups = []
    for i in model.C:
        count = round(pyo.value(model.n[i]))
        shares = tuple(max(0.0, pyo.value(model.x[i, k])) for k in model.K)
        busy = max(0.0, pyo.value(model.W[i]))  # W_c: instance-seconds of work, as the model states it
        if count == 0 or busy <= 1e-9:
            continue  # instances without work cost nothing only when startup is free: not part of the plan
        # With free startup, more instances than the work needs are an equally cheap optimum;
        # report the fewest that meet the deadline (same cost).
        needed = math.ceil(busy / (deadline_s - candidates[i].startup_seconds) - 1e-9)
        groups.append(FleetGroup(candidates[i], max(1, min(count, needed)), shares, busy))
    return FleetSolution(float(pyo.value(model.cost)), tuple(groups))


def fastest_within_budget(problem: FleetProblem, tolerance_s: float = 60.0, longest_s: float = 30 * 24 * 3600.0) -> FleetSolution:
    """Minimum-makespan fleet within the problem's budget ($): bisection on the deadline (Algorithm 1)."""
    try:
        best = solve_fleet(problem.with_(deadline_s=longest_s))
    except Infeasible:
        raise Infeasible(f"no fleet finishes within {longest_s / 3600:.0f}h for ${problem.budget:.2f}") from None
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
