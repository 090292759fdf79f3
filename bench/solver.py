"""Fleet MILP solve time against problem size (offerings × configurations × classes).

Candidates are synthetic but shaped like real ones: per-offering prices of $0.5-$100/h and
per-class throughputs that scale with price, some configurations unable to serve some
classes. Prints build+solve seconds per size (best of `--repeat`) for the planner's
formulation (solver/fleet_model.py) and, as the baseline run in the same command, the
formulation as first written (bench/fleet_reference.py, one run: it takes ~40 s at 300
offerings); `speed-up` is baseline / current, and both optimal costs are printed.

    python -m bench.solver [--repeat 3] [--no-baseline]
"""

from __future__ import annotations

import argparse
import random
import time

import pandas as pd

from solver.candidates import Candidate
from bench.fleet_reference import reference_cost
from solver.fleet import FleetProblem, solve_fleet
from solver.workload import bucket_workload

SIZES = [  # (offerings, configurations per offering, classes)
    (10, 1, 4), (10, 10, 9), (40, 10, 9), (40, 30, 9), (100, 10, 9), (100, 30, 16), (300, 10, 9), (300, 30, 9), (300, 10, 36),
]


def synthetic(offerings: int, configs: int, classes: int, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    side = round(classes**0.5)  # a side x side grid of length buckets: exactly `classes` classes
    edges_in = tuple(float(64 * 2**i) for i in range(side - 1)) + (float("inf"),)
    edges_out = tuple(float(32 * 2**i) for i in range(side - 1)) + (float("inf"),)
    groups = [(64 * 2**i - 1, 32 * 2**j - 1, rng.randint(1000, 50_000)) for i in range(side) for j in range(side)]
    workload = bucket_workload(groups, edges_in, edges_out)
    candidates = []
    for o in range(offerings):
        price = rng.uniform(0.5, 100.0)
        for _ in range(configs):
            speed = price * rng.uniform(0.5, 2.0)
            rates = tuple(0.0 if rng.random() < 0.1 else speed * rng.uniform(0.5, 5.0) / (1 + k) for k in range(len(workload.classes)))
            candidates.append(Candidate(o, f"o{o}", f"g{o % 12}", rng.choice([1, 4, 8]), False, price, 1, 1,
                                        rng.choice([16, 8, 4]), 1.0, rates, 600.0))
    availability = {o: rng.randint(1, 16) for o in range(offerings)}
    return candidates, workload, availability


def best_seconds(call, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    """Fastest wall time (s) of `repeat` calls, and the last call's answer."""
    best, answer = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        answer = call()
        best = min(best, time.perf_counter() - start)
    return best, answer


def main() -> None:
    parser = argparse.ArgumentParser(description="Fleet MILP solve time, current vs first formulation.")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size for the current formulation (best is kept)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the first formulation (it takes minutes)")
    args = parser.parse_args()
    solve_fleet(FleetProblem(*synthetic(2, 1, 1)[:2], 3600, {0: 1, 1: 1}))  # imports and HiGHS's first start, not timed
    rows = []
    for offerings, configs, classes in SIZES:
        candidates, workload, availability = synthetic(offerings, configs, classes)
        problem = FleetProblem(candidates, workload, 6 * 3600, availability, gpu_caps={"g0": 32})
        seconds, solution = best_seconds(lambda: solve_fleet(problem), args.repeat)
        row = {"offerings": offerings, "configs/offering": configs, "classes": len(workload.classes),
               "candidates": len(candidates), "x variables": len(candidates) * len(workload.classes),
               "seconds": seconds, "groups": len(solution.groups), "cost $": solution.cost}  # type: ignore[attr-defined]
        if not args.no_baseline:
            row["baseline s"], row["baseline cost $"] = best_seconds(lambda: reference_cost(problem), 1)
            row["speed-up"] = row["baseline s"] / seconds
        rows.append(row)
        print(f"{offerings}x{configs}x{classes}: {seconds:.2f} s", flush=True)
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
