"""Planner vs baselines on the shipped catalog: cost of costserve's plan and of each baseline.

36 scenarios = 3 models × 4 workload mixes × 3 settings: `relaxed` (12h, spot, every cloud in
the catalog, no caps), `tight` (3h, a $2000 budget, GPU caps, on-demand) and `aws-account`
(8h, spot, only the offerings of one AWS account — how most teams buy GPUs). Prints one row
per scenario and, per baseline (solver/baselines.py), the geometric-mean ratio baseline /
costserve (> 1: costserve is cheaper) over the scenarios both can plan, overall and per setting;
the count where only costserve finds a fleet (no scenario is dropped silently); and the count
where the baseline is cheaper, which must be 0 (asserted: each baseline is a restriction of the
same MILP).

    python -m bench.planner [--no-partition] [--confidence C | --on-deadline]

Plans are made at `--confidence` (default 0.9, the planner's: the makespan at that quantile fits the deadline, the
cost there the budget; solver/margin.py); `--on-deadline` plans as before issue 36, the makespan on the deadline.
Baselines are planned at the same confidence and restated at the predicted rates, so one may come out a sliver cheaper
than costserve's plan where its GPU's prediction is surer: counted, not asserted.
"""

from __future__ import annotations

import argparse
import math
import time

import pandas as pd

from catalog.availability import apply_availability
from catalog.load import load_gpus, load_models, load_offerings
from solver.baselines import BASELINES
from solver.planner import PlanningError, plan_batch
from solver.workload import bucket_workload

MIXES = {
    "short chat": [(120, 80, 150_000), (300, 150, 50_000)],
    "long-prompt summaries": [(3000, 200, 20_000), (1500, 150, 20_000)],
    "long generation": [(200, 1500, 10_000), (400, 800, 10_000)],
    "mixed": [(150, 100, 60_000), (1500, 300, 15_000), (600, 1200, 5_000), (4000, 250, 5_000)],
}
MODELS = ("Llama-3.1-8B", "Qwen2.5-32B", "Llama-3.1-70B")
SETTINGS = {
    "relaxed": dict(deadline_h=12, budget=None, spot=True, caps={}),
    "tight": dict(deadline_h=3, budget=2000.0, spot=False, caps={"H100": 16, "H200": 8, "A100-80GB": 16}),
    "aws-account": dict(deadline_h=8, budget=None, spot=True, caps={}, clouds=("aws",)),
}
QUALITY = 0.99
SCALE = 10  # nightly-batch sizes: 0.5M-2M requests per scenario


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-partition", action="store_true", help="only whole-model uniform-bit configurations")
    p.add_argument("--confidence", type=float, default=0.9, help="plan so the deadline is met with this probability")
    p.add_argument("--on-deadline", action="store_true", help="plan on the deadline itself (no margin)")
    a = p.parse_args()
    gpus, offerings, models = load_gpus(), load_offerings(), load_models().set_index("model", drop=False)
    rows = []
    for model in MODELS:
        for mix, groups in MIXES.items():
            workload = bucket_workload([(i, o, n * SCALE) for i, o, n in groups])
            for setting, s in SETTINGS.items():
                limited = apply_availability(offerings, None, s["caps"])
                if "clouds" in s:
                    limited = limited[limited["cloud"].isin(s["clouds"])]
                start = time.perf_counter()
                try:
                    plan = plan_batch(workload, models.loc[model], limited, gpus, s["deadline_h"] * 3600, s["budget"],
                                      QUALITY, s["spot"], s["caps"],
                                      partitioned=not a.no_partition,
                                      confidence=None if a.on_deadline else a.confidence)
                except PlanningError as exc:
                    rows.append({"model": model, "mix": mix, "setting": setting, "costserve $": math.nan, "note": str(exc)[:60]})
                    continue
                row = {"model": model, "mix": mix, "setting": setting, "costserve $": plan.cost,
                       "P(meet)": plan.outlook.p_meet if plan.outlook else math.nan,
                       "makespan h": plan.makespan_s / 3600, "plan s": time.perf_counter() - start,
                       "fleet": " + ".join(f"{g.count}x{g.instance_type}{'*' if g.spot else ''}" for g in plan.groups)}
                for b in plan.baselines:
                    row[f"{b.name} $"] = b.cost if b.cost is not None else math.nan
                rows.append(row)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 60)
    print(table.round(2).to_string(index=False))
    print()
    solved = table.dropna(subset=["costserve $"])
    print(f"scenarios: {len(table)}, planned by costserve: {len(solved)}, by nobody: {len(table) - len(solved)}")
    summary = []
    for name in BASELINES:
        both = solved.dropna(subset=[f"{name} $"])
        ratios = both[f"{name} $"] / both["costserve $"]
        cheaper = int((both[f"{name} $"] < both["costserve $"] * (1 - 1e-6)).sum())
        summary.append({"baseline": name, "geomean baseline/costserve": _geomean(ratios), "both plan": len(both),
                        **{f"{k}": _geomean(ratios[both["setting"] == k]) for k in SETTINGS},
                        "only costserve plans": len(solved) - len(both), "baseline cheaper": cheaper})
    print(pd.DataFrame(summary).round(3).to_string(index=False))
    if a.on_deadline:  # the same MILP over a subset, at the same rates: never cheaper
        assert all(row["baseline cheaper"] == 0 for row in summary), "a baseline is cheaper than costserve's plan"


def _geomean(ratios: "pd.Series") -> float:
    return math.exp(ratios.map(math.log).mean()) if len(ratios) else math.nan

if __name__ == "__main__":
    main()
