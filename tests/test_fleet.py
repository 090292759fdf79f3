"""Fleet MILP: hand-computed optima, brute-force agreement, constraints never violated."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from scipy.optimize import linprog

from solver.candidates import Candidate
from solver.fleet import FleetProblem, Infeasible, fastest_within_budget, solve_fleet
from solver.workload import Workload, WorkloadClass


def cand(offering: int, price: float, rates: tuple[float, ...], gpu: str = "X", startup: float = 0.0, gpus: int = 1) -> Candidate:
    return Candidate(offering=offering, label=f"o{offering}", gpu=gpu, gpus_per_instance=gpus, spot=False,
                     price_per_hour=price, tp=1, replicas=1, bits=16, quality=1.0, requests_per_s=rates,
                     startup_seconds=startup)


def work(*counts: int) -> Workload:
    return Workload(tuple(WorkloadClass(f"k{i}", n, 100 * n, 100 * n) for i, n in enumerate(counts)))


HOUR = 3600.0


def test_two_types_one_class_hand_computed() -> None:
    # A: $2/h, 1 req/s -> $20 for 36,000 requests; B: $3/h, 2 req/s -> $15 (18,000 instance-seconds)
    a, b = cand(0, 2.0, (1.0,)), cand(1, 3.0, (2.0,))
    jobs = work(36_000)
    best = solve_fleet(FleetProblem([a, b], jobs, 5 * HOUR, {0: 4, 1: 4}))
    assert best.cost == pytest.approx(15.0)
    assert [(g.candidate.offering, g.count) for g in best.groups] == [(1, 1)]
    # B unavailable: A needs 36,000 instance-seconds, 2 instances in 5h, $20
    only_a = solve_fleet(FleetProblem([a, b], jobs, 5 * HOUR, {0: 4, 1: 0}))
    assert only_a.cost == pytest.approx(20.0) and only_a.groups[0].count == 2
    # 4h and one B: B does 28,800 requests ($12), A the other 7,200 ($4)
    mixed = solve_fleet(FleetProblem([a, b], jobs, 4 * HOUR, {0: 4, 1: 1}))
    assert mixed.cost == pytest.approx(16.0)
    shares = {g.candidate.offering: g.shares[0] for g in mixed.groups}
    assert shares == pytest.approx({0: 0.2, 1: 0.8})
    # startup is paid per instance and shortens the usable window: 2 B instances x 600 s x $3/h = $1 more
    slow = solve_fleet(FleetProblem([cand(1, 3.0, (2.0,), startup=600.0)], jobs, 3 * HOUR, {1: 4}))
    assert slow.groups[0].count == 2 and slow.cost == pytest.approx(15.0 + 2 * 600 * 3 / HOUR)


def test_a_tiny_batch_on_a_fast_gpu_still_pays_for_one_instance() -> None:
    # 5 requests at 1.5e8 req/s: 3e-8 instance-seconds, below HiGHS's feasibility tolerance;
    # the plan must still start one instance and pay its startup (600 s at $3.6/h = $0.60)
    fast = cand(0, 3.6, (1.5e8,), startup=600.0)
    best = solve_fleet(FleetProblem([fast], work(5), HOUR, {0: 2}))
    assert [(g.candidate.offering, g.count) for g in best.groups] == [(0, 1)]
    assert best.cost == pytest.approx(0.6, rel=1e-6)


def test_budget_and_gpu_caps() -> None:
    a, b = cand(0, 2.0, (1.0,), gpu="A"), cand(1, 3.0, (2.0,), gpu="B", gpus=4)
    jobs = work(36_000)
    with pytest.raises(Infeasible):
        solve_fleet(FleetProblem([a, b], jobs, 5 * HOUR, {0: 4, 1: 4}, budget=14.99))
    capped = solve_fleet(FleetProblem([a, b], jobs, 5 * HOUR, {0: 4, 1: 4}, gpu_caps={"B": 3}))  # one B box has 4 GPUs
    assert {g.candidate.gpu for g in capped.groups} == {"A"} and capped.cost == pytest.approx(20.0)


def test_fastest_within_budget_bisects_the_deadline() -> None:
    a = cand(0, 2.0, (1.0,))
    jobs = work(36_000)  # 10 instance-hours: $20 however many instances run it
    fast = fastest_within_budget(FleetProblem([a], jobs, math.inf, availability={0: 4}, budget=25.0))
    assert fast.groups[0].count == 4
    assert fast.makespan_seconds == pytest.approx(2.5 * HOUR, abs=61)
    with pytest.raises(Infeasible):
        fastest_within_budget(FleetProblem([a], jobs, math.inf, availability={0: 4}, budget=19.0))


def brute_force(cands: list[Candidate], jobs: Workload, deadline: float, avail: dict[int, int], budget: float | None) -> float | None:
    """Cheapest cost by enumerating every instance-count vector and solving the assignment LP."""
    ranges = [range(avail[c.offering] + 1) for c in cands]
    best = None
    C, K = len(cands), len(jobs.classes)
    for counts in itertools.product(*ranges):
        per_offering: dict[int, int] = {}
        for c, n in zip(cands, counts):
            per_offering[c.offering] = per_offering.get(c.offering, 0) + n
        if any(n > avail[o] for o, n in per_offering.items()):
            continue
        # variables x[c,k] flattened c-major; seconds per unit share s[c,k] = N_k / r_ck
        secs = [[jobs.classes[k].count / c.requests_per_s[k] if c.requests_per_s[k] > 0 else None for k in range(K)] for c in cands]
        cost_vec = [c.price_per_hour / HOUR * (secs[i][k] or 0.0) for i, c in enumerate(cands) for k in range(K)]
        bounds = [(0, 1 if secs[i][k] is not None and deadline > cands[i].startup_seconds else 0) for i in range(C) for k in range(K)]
        a_eq = [[1.0 if k2 == k else 0.0 for i in range(C) for k2 in range(K)] for k in range(K)]
        a_ub = [[(secs[i][k] or 0.0) if i2 == i else 0.0 for i2 in range(C) for k in range(K)] for i in range(C)]
        b_ub = [n * max(0.0, deadline - c.startup_seconds) for c, n in zip(cands, counts)]
        lp = linprog(cost_vec, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0] * K, bounds=bounds, method="highs")
        if lp.status != 0:
            continue
        total = lp.fun + sum(c.price_per_hour / HOUR * c.startup_seconds * n for c, n in zip(cands, counts))
        if budget is not None and total > budget + 1e-9:
            continue
        best = total if best is None else min(best, total)
    return best


@pytest.mark.parametrize("seed", range(60))
def test_milp_equals_brute_force_on_random_instances(seed: int) -> None:
    rng = random.Random(seed)
    n_offerings = rng.randint(1, 3)
    cands = []
    for o in range(n_offerings):
        price, startup = rng.uniform(0.5, 10.0), rng.choice([0.0, 300.0, 900.0])
        for _ in range(rng.randint(1, 3)):  # configurations share an offering's availability, often its price
            rates = tuple(rng.choice([0.0, rng.uniform(0.2, 5.0), rng.uniform(0.2, 5.0)]) for _ in range(2))
            if rng.random() < 0.3:
                price = rng.uniform(0.5, 10.0)
            cands.append(cand(o, price, rates, startup=startup))
    jobs = work(rng.randint(100, 20_000), rng.randint(100, 20_000))
    avail = {o: rng.randint(0, 3) for o in range(n_offerings)}
    deadline = rng.uniform(0.5, 8.0) * HOUR
    budget = rng.choice([None, rng.uniform(1.0, 60.0)])
    expected = brute_force(cands, jobs, deadline, avail, budget)
    if expected is None:
        with pytest.raises(Infeasible):
            solve_fleet(FleetProblem(cands, jobs, deadline, avail, budget))
        return
    got = solve_fleet(FleetProblem(cands, jobs, deadline, avail, budget))
    assert got.cost == pytest.approx(expected, rel=1e-6, abs=1e-6)
    # the solution itself respects every constraint
    for g in got.groups:
        assert g.finish_seconds <= deadline + 1e-6
    used: dict[int, int] = {}
    for g in got.groups:
        used[g.candidate.offering] = used.get(g.candidate.offering, 0) + g.count
    assert all(used[o] <= avail[o] for o in used)
    if budget is not None:
        assert got.cost <= budget + 1e-6
    for k in range(2):
        assert sum(g.shares[k] for g in got.groups) == pytest.approx(1.0)


def test_pruning_drops_only_dominated_configurations() -> None:
    from solver.fleet import prune_dominated

    a = cand(0, 2.0, (1.0, 2.0))
    worse = cand(0, 2.0, (0.5, 2.0))  # no better anywhere: dropped
    twin = cand(0, 2.0, (1.0, 2.0))  # identical: one of the two stays
    other = cand(0, 2.0, (2.0, 0.1))  # better in class 0: stays
    pricier = cand(0, 3.0, (0.1, 0.1))  # another price: never compared
    assert prune_dominated([a, worse, twin, other, pricier]) == [a, other, pricier]


def test_one_gpu_type_spans_its_regions_and_equals_the_best_type_alone() -> None:
    # T4 in two regions (2 instances each), L4 in one: 30,000 requests in 2h need 3 T4 instances (1.5 req/s each)
    t4_east, t4_west = cand(0, 1.0, (1.5,), gpu="T4"), cand(1, 1.1, (1.5,), gpu="T4")
    l4 = cand(2, 3.0, (3.0,), gpu="L4")
    problem = FleetProblem([t4_east, t4_west, l4], work(30_000), 2 * HOUR, {0: 2, 1: 2, 2: 4})
    one_type = solve_fleet(problem, one_gpu_type=True)
    assert {g.candidate.gpu for g in one_type.groups} == {"T4"}  # one type ...
    assert {g.candidate.offering for g in one_type.groups} == {0, 1}  # ... in both of its regions
    by_type = [solve_fleet(problem.with_(candidates=[c for c in problem.candidates if c.gpu == gpu]))
               for gpu in ("T4", "L4")]
    assert one_type.cost == pytest.approx(min(s.cost for s in by_type))
    assert solve_fleet(problem).cost <= one_type.cost + 1e-9  # the restriction is never cheaper


@pytest.mark.parametrize("seed", range(6))
def test_one_gpu_type_equals_the_cheapest_type_solved_alone_on_random_instances(seed: int) -> None:
    rng = random.Random(seed)
    gpus = ["A", "B", "C"]
    candidates = [cand(o, rng.uniform(1, 10), tuple(rng.uniform(0.5, 5) for _ in range(2)), gpu=gpus[o % 3],
                       startup=600.0) for o in range(6)]
    problem = FleetProblem(candidates, work(rng.randint(5_000, 40_000), rng.randint(5_000, 40_000)), 3 * HOUR,
                           {o: rng.randint(1, 3) for o in range(6)})
    alone = []
    for gpu in gpus:
        try:
            alone.append(solve_fleet(problem.with_(candidates=[c for c in candidates if c.gpu == gpu])).cost)
        except Infeasible:
            pass
    if not alone:
        with pytest.raises(Infeasible):
            solve_fleet(problem, one_gpu_type=True)
        return
    assert solve_fleet(problem, one_gpu_type=True).cost == pytest.approx(min(alone), rel=1e-6)
