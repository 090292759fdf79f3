"""How far each prediction may be off, from where it comes from.

Every fleet group's rate (requests/s) is log-normal around its prediction: ln(true ÷ predicted) has a
spread σ (`rate_spread`) set by the prediction's provenance —
- the roofline: the root-mean-square of ln(predicted ÷ measured) over the published points of
  `catalog/data/measured_throughput.csv` for that GPU and precision (≥ ROOFLINE_MIN_POINTS of them), else
  over all points (`roofline_spread`; bench.fidelity prints the points);
- a `costserve profile` of the GPU or CPU: PROFILED_LOG_SPREAD;
- a calibration from finished runs: CALIBRATED_LOG_SPREAD;
- the CPU roofline of a model never run here (the first local run): FIRST_RUN_LOG_SPREAD.
Start-ups spread by STARTUP_LOG_SPREAD, and a spot group is lost SPOT_LOSSES_PER_HOUR times an hour on
average, each loss costing a replacement's start-up. solver/outlook.py turns these into a fleet's makespan and
cost distribution and its P(meet deadline).
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

ROOFLINE_MIN_POINTS = 20  # points a GPU/precision needs for a spread of its own
# The cost model's own spread over every published point: 0.163 (302 points, 2026-12-07); used only if the table is missing.
ROOFLINE_LOG_SPREAD = 0.163
# Calibrated predictions land within ~10% of the runs that follow (bench.calibration: predicted ÷ actual 0.9–1.1 after
# one calibrating run): σ of ln = 0.10.
CALIBRATED_LOG_SPREAD = 0.10
# A profile measures this hardware but at its own grid and batch, not the run's: the same 10% as a calibration.
PROFILED_LOG_SPREAD = 0.10
# The first local run of a model: `make demo` from fresh clones measured predicted ÷ actual makespan 0.42 on a quiet
# 2-vCPU machine and 0.17 on a busy one (issue 36): the RMS of ln(1/0.42) and ln(1/0.17) is 1.39.
FIRST_RUN_LOG_SPREAD = math.sqrt((math.log(1 / 0.42) ** 2 + math.log(1 / 0.17) ** 2) / 2)
# Cloud start-up (provisioning, image pull, model load) varies about ×/÷ 1.65 around its 600 s allowance (SkyPilot
# launches of 5–15 minutes are both common): σ of ln = 0.5.
STARTUP_LOG_SPREAD = 0.5
# Spot losses: SkyPilot's spot-traces (single-V100 zones) show 2–33 losses per available day; their geometric mean
# is 8.1 a day, 0.34 an hour.
SPOT_LOSSES_PER_HOUR = math.sqrt(2 * 33) / 24
# The measured rate of a running group: its own jobs so far, within 5% of what it goes on to do (a shard is tens of
# jobs; the driver measures over at least MEASURED_MIN_JOBS of them).
MEASURED_LOG_SPREAD = 0.05


def z_of(confidence: float) -> float:
    """The standard normal quantile of `confidence` (0 < confidence < 1): 1.28 at 0.9."""
    return NormalDist().inv_cdf(confidence)


@lru_cache(maxsize=1)
def _roofline_spreads() -> dict[tuple[str, str], float]:
    """{(gpu, "fp8" | "fp16"): σ} of every GPU/precision with ROOFLINE_MIN_POINTS points, and ("*", "*") for all."""
    import numpy as np

    from catalog.load import load_gpus, load_measured_throughput, load_models
    from solver.fidelity import fidelity_table

    table = fidelity_table(load_measured_throughput(), load_models(), load_gpus())
    logs = np.log(table["ratio"])
    out = {("*", "*"): float(np.sqrt((logs**2).mean()))}
    for (gpu, precision), part in logs.groupby([table["gpu"], table["precision"]]):
        if len(part) >= ROOFLINE_MIN_POINTS:
            out[(str(gpu), str(precision))] = float(np.sqrt((part**2).mean()))
    return out


def roofline_spread(gpu: str, fp8: bool) -> float:
    """σ of ln(true ÷ predicted rate) of the cost model on `gpu` at FP8 (else 16-bit): that GPU and precision's
    published points when there are enough, else all of them."""
    try:
        spreads = _roofline_spreads()
    except (OSError, KeyError, ValueError):  # no table (a trimmed catalog): the shipped fit
        return ROOFLINE_LOG_SPREAD
    return spreads.get((gpu, "fp8" if fp8 else "fp16"), spreads[("*", "*")])


def rate_spread(gpu: str, fp8: bool, profiled: bool) -> float:
    """σ of ln(true ÷ predicted rate) of an uncalibrated candidate by provenance: profiled, the CPU roofline of a
    model never run (FIRST_RUN_LOG_SPREAD), else the GPU roofline. A calibration has its runs' own spread
    (costserve/store/calibration.calibrated_spread)."""
    if profiled:
        return PROFILED_LOG_SPREAD
    return FIRST_RUN_LOG_SPREAD if gpu == "cpu" else roofline_spread(gpu, fp8)


def provenance(calibrated: bool, profiled: bool, gpu: str) -> str:
    """Where a rate comes from, in words: `calibrated`, `profiled`, `first run` (CPU roofline) or `roofline`."""
    if calibrated:
        return "calibrated"
    if profiled:
        return "profiled"
    return "first run" if gpu == "cpu" else "roofline"


def spread_words(kind: str, sigma: float) -> str:
    """A spread for people: `roofline ±18%`, or `first run ×/÷ 4.0` when it is wider than ±50%."""
    wide = math.exp(sigma)
    return f"{kind} ×/÷ {wide:.1f}" if wide > 1.5 else f"{kind} ±{wide - 1:.0%}"
