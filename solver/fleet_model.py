"""The fleet MILP (Jiang et al., ICML 2025; Mélange) as one Pyomo model.

For a batch with deadline D billed per second, a candidate c (an instance type running one
configuration) with n_c instances serves a share x_ck of each class k; a whole class on c takes
w_ck = N_k / r_ck instance-seconds, so its work is W_c = Σ_k w_ck · x_ck and it costs
p_c · (n_c · s_c + W_c). The deadline is W_c ≤ n_c · (D − s_c). Steady mode (Mélange's own
ILP) pays every instance for all of D: p_c · n_c · D.

The rows x_ck ≤ n_c ("a share needs an instance") are valid for integer n_c — any share needs
at least one instance — and implied by the deadline row when w_ck ≥ D − s_c, so only the
other pairs get one. They make the LP relaxation tight: without them it pays a fraction of a
start-up for a class that fits on one instance, and HiGHS spends seconds closing that gap with
cuts; with them the relaxation is integral on most instances (bench/solver.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

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

    def with_(self, **changes: object) -> FleetProblem:
        """The same problem with some fields replaced (e.g. `deadline_s`, `budget`, `candidates`)."""
        return replace(self, **changes)  # type: ignore[arg-type]  # dataclasses.replace's **changes are typed per field at run time


def _linear(coefficients: list[float], variables: list) -> LinearExpression:
    """Σ coefficient · variable, built as one linear node: a summed generator builds one node per term, 5× slower at
    70 000 terms."""
    return LinearExpression(linear_coefs=coefficients, linear_vars=variables)


def class_work(candidates: list[Candidate], problem: FleetProblem) -> dict[tuple[int, int], float]:
    """w_ck (instance-seconds) of every pair (candidate c, class k) that can serve the class before the deadline."""
    deadline_s, classes = problem.deadline_s, problem.workload.classes
    return {
        (i, k): cls.count / c.requests_per_s[k]
        for i, c in enumerate(candidates)
        if deadline_s > c.startup_seconds
        for k, cls in enumerate(classes)
        if c.requests_per_s[k] > 0
    }


def build_fleet_model(problem: FleetProblem, one_gpu_type: bool = False) -> pyo.ConcreteModel:
    """The fleet MILP of `problem` (prices $/h, times s); `one_gpu_type` restricts the fleet to one GPU type, in any of
    its offerings (every region and cloud the problem has): the homogeneous baselines, what `sky launch --gpus H100:8`
    gives. `m.cost` ($) is the objective; `m.work[c, k]` holds w_ck."""
    candidates, deadline_s, availability = problem.candidates, problem.deadline_s, problem.availability
    w = class_work(candidates, problem)
    m = pyo.ConcreteModel("fleet")
    m.work = w
    m.CK = pyo.Set(initialize=list(w), dimen=2, ordered=True)  # pairs (c, k) where c can serve class k
    m.C = pyo.Set(initialize=sorted({i for i, _ in w}))  # candidates c that can serve something
    m.K = pyo.Set(initialize=range(len(problem.workload.classes)))  # workload classes k
    spare = {i: deadline_s - candidates[i].startup_seconds for i in m.C}  # D − s_c
    p = {i: candidates[i].price_per_hour / 3600 for i in m.C}  # p_c ($/s)
    by_candidate, by_class = defaultdict(list), defaultdict(list)
    for i, k in w:
        by_candidate[i].append(k)
        by_class[k].append(i)

    m.n = pyo.Var(
        m.C, domain=pyo.NonNegativeIntegers, bounds=lambda _, i: (0, availability.get(candidates[i].offering, 0))
    )
    m.x = pyo.Var(m.CK, bounds=(0, 1))
    if problem.steady:  # cost = Σ_c p_c · n_c · D
        m.cost = pyo.Expression(expr=_linear([p[i] * deadline_s for i in m.C], [m.n[i] for i in m.C]))
    else:  # cost = Σ_c p_c · (n_c · s_c + Σ_k w_ck · x_ck)
        m.cost = pyo.Expression(
            expr=_linear(
                [p[i] * candidates[i].startup_seconds for i in m.C] + [p[i] * w[i, k] for i, k in m.CK],
                [m.n[i] for i in m.C] + [m.x[i, k] for i, k in m.CK],
            )
        )
    m.objective = pyo.Objective(expr=m.cost, sense=pyo.minimize)
    # Σ_c x_ck = 1 : every class is served in full
    m.assigned = pyo.Constraint(
        m.K, rule=lambda m, k: _linear([1.0] * len(by_class[k]), [m.x[i, k] for i in by_class[k]]) == 1
    )
    # Σ_k w_ck · x_ck ≤ n_c · (D − s_c) : the work fits in the deadline
    m.deadline = pyo.Constraint(
        m.C,
        rule=lambda m, i: (
            _linear([w[i, k] for k in by_candidate[i]] + [-spare[i]], [m.x[i, k] for k in by_candidate[i]] + [m.n[i]])
            <= 0
        ),
    )
    # x_ck ≤ n_c : a share needs an instance (only where the deadline row does not imply it)
    m.SMALL = pyo.Set(initialize=[(i, k) for i, k in m.CK if w[i, k] < spare[i]], dimen=2, ordered=True)
    m.needs_instance = pyo.Constraint(m.SMALL, rule=lambda m, i, k: _linear([1.0, -1.0], [m.x[i, k], m.n[i]]) <= 0)
    _add_fleet_limits(m, problem, one_gpu_type)
    if problem.budget is not None:
        m.budget = pyo.Constraint(expr=m.cost <= problem.budget)  # cost ≤ B
    return m


def _add_fleet_limits(m: pyo.ConcreteModel, problem: FleetProblem, one_gpu_type: bool) -> None:
    """Availability per offering, GPUs per type, and (`one_gpu_type`) one GPU type for the whole fleet."""
    candidates, availability = problem.candidates, problem.availability
    by_offering, by_gpu = defaultdict(list), defaultdict(list)
    for i in m.C:
        by_offering[candidates[i].offering].append(i)
        by_gpu[candidates[i].gpu].append(i)
    # Σ_{c ∈ o} n_c ≤ A_o : availability of each offering (one candidate's own bound already says it)
    m.O = pyo.Set(initialize=sorted(o for o, members in by_offering.items() if len(members) > 1))
    m.available = pyo.Constraint(
        m.O,
        rule=lambda m, o: (
            _linear([1.0] * len(by_offering[o]), [m.n[i] for i in by_offering[o]]) <= availability.get(o, 0)
        ),
    )
    caps = {g: cap for g, cap in (problem.gpu_caps or {}).items() if g in by_gpu}
    m.G = pyo.Set(initialize=sorted(caps))
    # Σ_{c on GPU g} n_c · gpus_c ≤ cap_g : GPUs of a type across the fleet
    m.gpu_cap = pyo.Constraint(
        m.G,
        rule=lambda m, g: (
            _linear([float(candidates[i].gpus_per_instance) for i in by_gpu[g]], [m.n[i] for i in by_gpu[g]]) <= caps[g]
        ),
    )
    if not one_gpu_type:
        return
    m.T = pyo.Set(initialize=sorted(by_gpu))
    m.u = pyo.Var(m.T, domain=pyo.Binary)  # u_g = 1 for the one GPU type used
    m.one_type = pyo.Constraint(expr=sum(m.u[g] for g in m.T) <= 1)  # Σ_g u_g ≤ 1
    type_availability = {
        g: sum(availability.get(o, 0) for o in {candidates[i].offering for i in by_gpu[g]}) for g in by_gpu
    }
    # Σ_{c on g} n_c ≤ (Σ_{o of g} A_o) · u_g : only the chosen type has instances
    m.only_chosen = pyo.Constraint(
        m.T,
        rule=lambda m, g: (
            _linear([1.0] * len(by_gpu[g]) + [-float(type_availability[g])], [m.n[i] for i in by_gpu[g]] + [m.u[g]])
            <= 0
        ),
    )
