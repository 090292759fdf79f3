"""Mélange's own input planned by costserve (`plan --melange`), and throughput profiles at their own buckets."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from scipy.optimize import linprog

from costserve.cli import app
from solver.melange import MelangeInput, plan_melange
from solver.plan import Plan
from tests.conftest import EXAMPLES


def _serves(spec: MelangeInput, counts: dict[str, int]) -> bool:
    """Independent LP: can `counts` GPUs serve every bucket's rate at the profile's own per-bucket throughputs?"""
    buckets, gpus = spec.buckets(), [g for g in spec.gpu_info if counts.get(g, 0) > 0]
    if not gpus:
        return False
    n = len(buckets) * len(gpus)  # x[k, g]: share of bucket k on GPU type g
    a_eq = [[1.0 if v // len(gpus) == k else 0.0 for v in range(n)] for k in range(len(buckets))]
    a_ub, b_ub, bounds = [], [], []
    for gi, g in enumerate(gpus):
        row = [0.0] * n
        for k, (i, j, rate) in enumerate(buckets):
            tput = spec.gpu_info[g].tputs[i][j]
            row[k * len(gpus) + gi] = rate / tput if tput > 0 else 0.0
        a_ub.append(row)
        b_ub.append(counts[g])
    for k, (i, j, _) in enumerate(buckets):
        bounds += [(0, 1 if spec.gpu_info[g].tputs[i][j] > 0 else 0) for g in gpus]
    result = linprog([0.0] * n, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0] * len(buckets), bounds=bounds)
    return result.status == 0


def _random_spec(rng: random.Random) -> MelangeInput:
    rows, cols = rng.choice([(2, 2), (2, 3), (3, 3)])
    gpus = rng.sample(["A10G", "L4", "A100-80GB", "H100"], rng.choice([2, 3]))
    dist = [[rng.choice([0.0, rng.random()]) for _ in range(cols)] for _ in range(rows)]
    dist[0][0] += 0.1  # at least one bucket with requests
    total = sum(map(sum, dist))
    info = {g: {"cost": round(rng.uniform(0.5, 8.0), 2),
                "tputs": [[round(rng.uniform(0.2, 6.0), 2) * (0 if rng.random() < 0.1 else 1) for _ in range(cols)]
                          for _ in range(rows)]} for g in gpus}
    for i in range(rows):  # every bucket is served by some GPU
        for j in range(cols):
            if all(info[g]["tputs"][i][j] == 0 for g in gpus):
                info[gpus[0]]["tputs"][i][j] = 1.0
    return MelangeInput.model_validate({"gpu_info": info, "workload_distribution": [[v / total for v in r] for r in dist],
                                        "total_request_rate": round(rng.uniform(1.0, 12.0), 2), "slice_factor": 4})


def _cheapest_by_brute_force(spec: MelangeInput, most: int = 10) -> float:
    best = float("inf")
    gpus = list(spec.gpu_info)
    for counts in itertools.product(range(most + 1), repeat=len(gpus)):
        cost = sum(n * spec.gpu_info[g].cost for n, g in zip(counts, gpus))
        if cost < best and _serves(spec, dict(zip(gpus, counts))):
            best = cost
    return best


@pytest.mark.parametrize("seed", range(30))
def test_random_melange_inputs_are_served_at_their_profiles_and_cost_no_more_than_brute_force(seed: int) -> None:
    spec = _random_spec(random.Random(seed))
    solution = plan_melange(spec)
    counts = {gpu: 0 for gpu in spec.gpu_info}
    for g in solution.groups:
        counts[g.candidate.gpu] += g.count
    assert _serves(spec, counts)  # the fleet serves its hour at the per-bucket throughputs (independent LP)
    assert solution.cost == pytest.approx(sum(n * spec.gpu_info[g].cost for g, n in counts.items()))
    assert solution.cost <= 1.02 * _cheapest_by_brute_force(spec) + 1e-9


def test_plan_melange_reads_melanges_example_as_is(cli, tmp_path: Path) -> None:
    result = cli.invoke(app, ["plan", "--melange", str(EXAMPLES / "melange-example.json"), "--json"])
    assert result.exit_code == 0, result.output
    # one A10G carries 0.25/5 + 0.125/1 + 0.375/10 + 0.25/5 = 26% of its capacity: cheaper than an A100
    assert json.loads(result.stdout) == {"A10G": 1, "A100-80GB": 0, "cost": 1.01}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"gpu_info": {"A10G": {"cost": 1.0, "tputs": [[1.0]]}},
                               "workload_distribution": [[0.5, 0.5]], "total_request_rate": 1.0}))
    refused = cli.invoke(app, ["plan", "--melange", str(bad)])
    assert refused.exit_code == 2 and "gpu_info.A10G.tputs: expected 1 rows of 2 values" in refused.output
    both = cli.invoke(app, ["plan", str(EXAMPLES / "jobs.jsonl"), "--melange", str(bad)])
    assert both.exit_code == 2


def test_a_profile_buckets_the_jobs_on_its_own_grid(cli, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"  # prompts of ~100 and ~400 tokens: two classes on costserve's grid, one on the profile's
    jobs.write_text("".join(json.dumps({"id": f"j{i}", "prompt": "word " * (80 if i % 2 else 320), "max_tokens": 50}) + "\n"
                            for i in range(400)))
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"input_edges": [512, 8192], "output_edges": [128, 2048],
                                   "gpu_info": {"L4": {"cost": 0.8, "tputs": [[300.0, 30.0], [20.0, 5.0]]}}}))
    args = ["plan", str(jobs), "--model", "Llama-3.1-8B", "--quality", "1.0", "--no-baselines", "--json"]
    plain = Plan.model_validate_json(cli.invoke(app, args).stdout)
    profiled_run = cli.invoke(app, args + ["--profiles", str(profile)])
    assert profiled_run.exit_code == 0, profiled_run.output
    profiled = Plan.model_validate_json(profiled_run.stdout)
    assert len(plain.workload) == 2 and [c.name for c in profiled.workload] == ["in 0-512 / out 0-128"]
    workload = tmp_path / "w.json"  # the same two lengths, enough of them that start-up does not decide the fleet
    workload.write_text(json.dumps({"classes": [{"input_tokens": 100, "output_tokens": 50, "count": 400_000},
                                                {"input_tokens": 400, "output_tokens": 50, "count": 400_000}]}))
    big = cli.invoke(app, ["plan", "--workload", str(workload)] + args[2:] + ["--profiles", str(profile)])
    profiled = Plan.model_validate_json(big.stdout)
    assert [c.name for c in profiled.workload] == ["in 0-512 / out 0-128"]
    l4 = [g for g in profiled.groups if g.gpu == "L4" and g.replica.tp == 1 and set(g.replica.bits) == {16}]
    assert l4  # the profile's fast L4 is the fleet, each replica at its bucket's measured rate
    assert all(g.requests_per_s["in 0-512 / out 0-128"] == pytest.approx(300.0 * g.replicas) for g in l4)
