"""The planner's fleet formulation (solver/fleet_model.py, matrices to HiGHS, LP first) against the formulation as
first written (bench/fleet_reference.py, Pyomo's appsi_highs): the same optimal cost on random instances, with every
kind of row the planner uses (budget, GPU caps, one GPU type, steady hour, start-up, work under a second)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from bench.fleet_reference import reference_cost
from bench.solver import synthetic
from solver.fleet import FleetProblem, Infeasible, solve_fleet


def random_problem(seed: int) -> tuple[FleetProblem, bool]:
    """A random fleet problem and whether to restrict it to one GPU type."""
    rng = random.Random(seed)
    candidates, workload, availability = synthetic(rng.randint(2, 8), rng.randint(1, 4), rng.choice([1, 4, 9]), seed)
    if rng.random() < 0.3:  # some start-ups free, some batches tiny: work under a second on fast instances
        candidates = [replace(c, startup_seconds=rng.choice([0.0, 60.0, 600.0])) for c in candidates]
    if rng.random() < 0.3:
        workload = replace(workload, classes=tuple(replace(cls, count=rng.randint(1, 20)) for cls in workload.classes))
    deadline = rng.uniform(0.3, 8.0) * 3600
    problem = FleetProblem(candidates, workload, deadline, availability,
                           budget=rng.choice([None, None, rng.uniform(5.0, 200.0)]),
                           gpu_caps=rng.choice([None, {"g0": rng.randint(1, 16), "g1": rng.randint(1, 16)}]),
                           steady=rng.random() < 0.2)
    return problem, rng.random() < 0.25


@pytest.mark.parametrize("seed", range(40))
def test_current_formulation_finds_the_first_formulations_optimum(seed: int) -> None:
    problem, one_gpu_type = random_problem(seed)
    expected = reference_cost(problem, one_gpu_type)
    if expected is None:
        with pytest.raises(Infeasible):
            solve_fleet(problem, one_gpu_type)
        return
    got = solve_fleet(problem, one_gpu_type)
    # both solve to HiGHS's default relative MIP gap (1e-4); the new rows are valid for every integer fleet
    assert got.cost == pytest.approx(expected, rel=2e-4, abs=1e-6)
    for group in got.groups:
        assert group.finish_seconds <= problem.deadline_s + 1e-6
    if problem.budget is not None:
        assert got.cost <= problem.budget + 1e-6
    for k in range(len(problem.workload.classes)):
        assert sum(g.shares[k] for g in got.groups) == pytest.approx(1.0)
