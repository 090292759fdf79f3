"""The cost model against published offline throughput: predicted ÷ measured per point, and the fit of its constants.

Reads `catalog/data/measured_throughput.csv` (TensorRT-LLM v0.17 perf-overview: H200, H100, L40S at
FP8 with an FP8 KV cache, A100-80GB at FP16; TP 1-8; nine input/output lengths) and prints, for the
model's constants (solver/costmodel.py) and, as the baseline in the same command, the constants as
first written from datasheet-typical figures (prefill 0.5 of peak, decode 0.7 of bandwidth, 1 GiB
runtime, no tensor-parallel communication term): a table per GPU, model and TP, then the share of
points within 0.8-1.25 and 0.5-2. `--points` prints every point. `--fit` refits the five constants
(Nelder-Mead on the mean squared log ratio) and prints them; `--fit-on H100,A100-80GB` fits on those
GPUs only and `--fit-models` on those models only, and reports the other points as held out. The shipped
constants were fitted on the dense models (`--fit-models Llama-3.1-8B,Llama-3.1-70B,Mistral-7B`): the
Mixtral-8x7B points are held out.

    python -m bench.fidelity [--points] [--fit [--fit-on GPU,...] [--fit-models MODEL,...]]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

import solver.costmodel as cm
from catalog.load import load_gpus, load_measured_throughput, load_models
from solver.fidelity import BOUNDS, WITHIN, fidelity_summary, fidelity_table

NAMES = ("PREFILL_EFFICIENCY", "DECODE_BANDWIDTH_EFFICIENCY", "ALLREDUCE_LATENCY_S", "LINK_EFFICIENCY", "RUNTIME_OVERHEAD_GPU_GIB")
FIRST_WRITTEN = (0.5, 0.7, 0.0, math.inf, 1.0)  # no communication term: an all-reduce cost nothing


def current() -> tuple[float, ...]:
    """The cost model's constants, in NAMES order."""
    return (cm.PREFILL_EFFICIENCY, cm.DECODE_BANDWIDTH_EFFICIENCY, cm.ALLREDUCE_LATENCY_S, cm.LINK_EFFICIENCY,
            cm.RUNTIME_OVERHEAD_GIB["gpu"])


@contextmanager
def constants(values: tuple[float, ...]) -> Iterator[None]:
    """The cost model with `values` (NAMES order) in place of its constants, restored after."""
    saved = current()
    try:
        _set(values)
        yield
    finally:
        _set(saved)


def _set(values: tuple[float, ...]) -> None:
    cm.PREFILL_EFFICIENCY, cm.DECODE_BANDWIDTH_EFFICIENCY, cm.ALLREDUCE_LATENCY_S, cm.LINK_EFFICIENCY = values[:4]
    cm.RUNTIME_OVERHEAD_GIB["gpu"] = values[4]


def table(values: tuple[float, ...], measured: pd.DataFrame) -> pd.DataFrame:
    """fidelity_table of `measured` under `values`."""
    with constants(values):
        return fidelity_table(measured, load_models(), load_gpus())


def fit(measured: pd.DataFrame, start: tuple[float, ...]) -> tuple[float, ...]:
    """Constants minimising the mean squared log(predicted ÷ measured) over `measured`, within physical bounds."""
    from scipy.optimize import minimize

    def loss(x: np.ndarray) -> float:
        eff, bw, latency_us, link, runtime = x
        if not (0 < eff <= 1 and 0 < bw <= 1 and latency_us >= 0 and 0 < link <= 1 and 0.5 <= runtime <= 3):
            return 1e9
        return float((np.log(table((eff, bw, latency_us * 1e-6, link, runtime), measured)["ratio"]) ** 2).mean())

    x0 = np.array([start[0], start[1], max(start[2], 10e-6) * 1e6, min(start[3], 0.9), start[4]])
    best = minimize(loss, x0, method="Nelder-Mead", options={"maxiter": 800, "xatol": 1e-4, "fatol": 1e-8})
    eff, bw, latency_us, link, runtime = best.x
    return (round(eff, 3), round(bw, 3), round(latency_us, 1) * 1e-6, round(link, 3), round(runtime, 2))


def summary_line(label: str, ratios: pd.Series) -> str:
    s = fidelity_summary(ratios)
    return (f"{label:<34} {int(s['points']):>6} {s['within']:>12.0%} {s['bounded']:>8.0%} {s['geomean']:>8.3f} "
            f"{s['min']:>6.2f} {s['max']:>6.2f}")


def print_groups(now: pd.DataFrame, before: pd.DataFrame) -> None:
    def geomean(s: pd.Series) -> float:
        return float(np.exp(np.log(s).mean()))

    keys = ["gpu", "precision", "model", "tp"]
    grouped = now.groupby(keys)["ratio"].agg(["count", "min", "max", geomean])
    grouped["baseline geomean"] = before.groupby(keys)["ratio"].agg(geomean)
    print(grouped.round(2).to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", action="store_true", help="print every point")
    parser.add_argument("--fit", action="store_true", help="refit the constants and print them")
    parser.add_argument("--fit-on", default="", help="comma-separated GPUs to fit on (the rest are held out)")
    parser.add_argument("--fit-models", default="", help="comma-separated models to fit on (the rest are held out)")
    args = parser.parse_args()
    measured = load_measured_throughput()
    now, before = table(current(), measured), table(FIRST_WRITTEN, measured)
    print(f"{len(measured)} published points: {', '.join(sorted(measured['gpu'].unique()))}; "
          f"{', '.join(sorted(measured['model'].unique()))}\n")
    print_groups(now, before)
    if args.points:
        cols = ["gpu", "precision", "model", "tp", "input_tokens", "output_tokens", "output_tokens_per_s", "predicted", "ratio"]
        print("\n" + now[cols].round(2).to_string(index=False))
    print(f"\n{'constants':<34} {'points':>6} {f'in {WITHIN[0]}-{WITHIN[1]}':>12} {f'in {BOUNDS[0]:g}-{BOUNDS[1]:g}':>8} "
          f"{'geomean':>8} {'min':>6} {'max':>6}")
    print(summary_line("first written (baseline)", before["ratio"]))
    print(summary_line("solver/costmodel.py now", now["ratio"]))
    s = fidelity_summary(now["ratio"])
    print(f"ratio of points within {WITHIN[0]}-{WITHIN[1]}, now / baseline: "
          f"{s['within'] / max(fidelity_summary(before['ratio'])['within'], 1e-9):.2f}x")
    if args.fit:
        gpus = [g for g in args.fit_on.split(",") if g]
        models = [m for m in args.fit_models.split(",") if m]
        keep = pd.Series(True, index=measured.index)
        if gpus:
            keep &= measured["gpu"].isin(gpus)
        if models:
            keep &= measured["model"].isin(models)
        on = measured[keep]
        fitted = fit(on, current())
        print("\nfitted: " + ", ".join(f"{n}={v:.4g}" for n, v in zip(NAMES, fitted)))
        refit = table(fitted, measured)
        print(summary_line("fitted, points fitted on", refit.loc[on.index, "ratio"]))
        if len(on) < len(measured):
            print(summary_line("fitted, held out", refit.loc[~measured.index.isin(on.index), "ratio"]))


if __name__ == "__main__":
    main()
