"""The fleet MILP as first written (to stop 25): per-configuration integers, no `x_ck ≤ n_c` rows, solved
through Pyomo's `appsi_highs`. Kept as the baseline bench.solver times and the reference
tests/test_fleet.py compares the current formulation's optimal costs to; never used to plan.
"""

from __future__ import annotations

from collections import defaultdict

import pyomo.environ as pyo

from solver.fleet import FleetProblem, prune_dominated


def reference_model(problem: FleetProblem, one_gpu_type: bool = False) -> pyo.ConcreteModel:
    """The old model: n_c integer, x_ck for every pair, W_c = Σ_k x_ck · N_k / r_ck; cost and rows as solver/fleet_model.py
    states them, without the `x_ck ≤ n_c` strengthening (one aggregated Σ_k x_ck ≤ |K| · n_c row where work is tiny)."""
    candidates, deadline_s, availability = problem.candidates, problem.deadline_s, problem.availability
    m = pyo.ConcreteModel("fleet_reference")
    m.C = pyo.Set(initialize=range(len(candidates)))
    m.K = pyo.Set(initialize=range(len(problem.workload.classes)))
    count = {k: cls.count for k, cls in enumerate(problem.workload.classes)}
    rate = {(i, k): c.requests_per_s[k] for i, c in enumerate(candidates) for k in m.K}
    usable = {i for i, c in enumerate(candidates) if deadline_s > c.startup_seconds}
    m.n = pyo.Var(m.C, domain=pyo.NonNegativeIntegers,
                  bounds=lambda _, i: (0, availability.get(candidates[i].offering, 0) if i in usable else 0))
    m.x = pyo.Var(m.C, m.K, bounds=lambda _, i, k: (0, 1 if rate[i, k] > 0 and i in usable else 0))
    m.W = pyo.Expression(m.C, rule=lambda m, i: sum(m.x[i, k] * count[k] / rate[i, k] for k in m.K if rate[i, k] > 0))
    price = {i: c.price_per_hour / 3600 for i, c in enumerate(candidates)}
    if problem.steady:
        m.cost = pyo.Expression(expr=sum(price[i] * m.n[i] * deadline_s for i in m.C))
    else:
        m.cost = pyo.Expression(expr=sum(price[i] * (m.n[i] * candidates[i].startup_seconds + m.W[i]) for i in m.C))
    m.objective = pyo.Objective(expr=m.cost)
    m.assigned = pyo.Constraint(m.K, rule=lambda m, k: sum(m.x[i, k] for i in m.C) == 1)
    m.deadline = pyo.Constraint(m.C, rule=lambda m, i: m.W[i] <= m.n[i] * max(0.0, deadline_s - candidates[i].startup_seconds))
    weak = [i for i in usable if any(0 < count[k] / rate[i, k] < 1.0 for k in m.K if rate[i, k] > 0)]
    m.served = pyo.Constraint(weak, rule=lambda m, i: sum(m.x[i, k] for k in m.K) <= len(m.K) * m.n[i])
    by_offering, by_gpu = defaultdict(list), defaultdict(list)
    for i, c in enumerate(candidates):
        by_offering[c.offering].append(i)
        by_gpu[c.gpu].append(i)
    m.available = pyo.Constraint(list(by_offering), rule=lambda m, o: sum(m.n[i] for i in by_offering[o]) <= availability.get(o, 0))
    caps = {g: cap for g, cap in (problem.gpu_caps or {}).items() if g in by_gpu}
    m.gpu_cap = pyo.Constraint(list(caps), rule=lambda m, g: sum(m.n[i] * candidates[i].gpus_per_instance for i in by_gpu[g]) <= caps[g])
    if one_gpu_type:
        m.u = pyo.Var(list(by_gpu), domain=pyo.Binary)
        m.one_type = pyo.Constraint(expr=sum(m.u.values()) <= 1)
        limit = {g: sum(availability.get(o, 0) for o in {candidates[i].offering for i in by_gpu[g]}) for g in by_gpu}
        m.only_chosen = pyo.Constraint(list(by_gpu), rule=lambda m, g: sum(m.n[i] for i in by_gpu[g]) <= limit[g] * m.u[g])
    if problem.budget is not None:
        m.budget = pyo.Constraint(expr=m.cost <= problem.budget)
    return m


def reference_cost(problem: FleetProblem, one_gpu_type: bool = False) -> float | None:
    """The old formulation's optimal cost ($), None when it finds no fleet."""
    model = reference_model(problem.with_(candidates=prune_dominated(problem.candidates)), one_gpu_type)
    result = pyo.SolverFactory("appsi_highs").solve(model, load_solutions=False)
    if result.solver.termination_condition != pyo.TerminationCondition.optimal:
        return None
    model.solutions.load_from(result)
    return float(pyo.value(model.cost))
