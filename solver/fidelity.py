"""The cost model held to published measurements: predicted ÷ measured output tokens/s for each point of
`catalog/data/measured_throughput.csv` (`python -m bench.fidelity` prints it; tests/test_fidelity.py holds it).

Each point is a replica of `tp` GPUs of one kind serving requests of fixed input and output length at the
measuring engine's batch and memory rules (solver.serving_engine), in the point's precision: fp16 layers
are 16-bit; fp8 layers are FP8 weights and activations on FP8 tensor cores, the LM head 16-bit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from solver.costmodel import BF16, Device, ModelShape, Numerics, class_throughput
from solver.serving_engine import TENSORRT_LLM, VLLM, ServingEngine

if TYPE_CHECKING:
    import pandas as pd

ENGINES: dict[str, ServingEngine] = {e.name: e for e in (TENSORRT_LLM, VLLM)}
WITHIN = (0.8, 1.25)  # a point is "close" when predicted ÷ measured lies here
BOUNDS = (0.5, 2.0)  # every point must lie here


def numerics_of(precision: str, kv_cache_dtype: str) -> Numerics:
    """The cost model's numerics for a measured point's precision and KV cache dtype ("fp16" | "fp8")."""
    return Numerics(
        "fp8" if precision == "fp8" else BF16.activations, "fp8" if kv_cache_dtype == "fp8" else BF16.kv_cache
    )


def predicted_output_tokens_per_s(point: Any, model: ModelShape, gpu_row: Any) -> float:
    """Predicted output tokens/s of one measured point (a measured_throughput.csv row) on its model and GPU."""
    device = Device.from_catalog(gpu_row, int(point["tp"]))
    bits = (8 if point["precision"] == "fp8" else 16,) * model.layers
    rate = class_throughput(
        model,
        device,
        bits,
        float(point["input_tokens"]),
        float(point["output_tokens"]),
        numerics=numerics_of(point["precision"], point["kv_cache_dtype"]),
        engine=ENGINES[point["engine"]],
    )
    return rate.output_tokens_per_s


def fidelity_table(measured: pd.DataFrame, models: pd.DataFrame, gpus: pd.DataFrame) -> pd.DataFrame:
    """The measured points with `predicted` (output tokens/s) and `ratio` (predicted ÷ measured) columns."""
    shapes = {name: ModelShape.from_row(row) for name, row in models.set_index("model", drop=False).iterrows()}
    rows = gpus.set_index("gpu", drop=False)
    table = measured.copy()
    table["predicted"] = [
        predicted_output_tokens_per_s(p, shapes[p["model"]], rows.loc[p["gpu"]]) for _, p in measured.iterrows()
    ]
    table["ratio"] = table["predicted"] / table["output_tokens_per_s"]
    return table


def fidelity_summary(ratios: pd.Series) -> dict[str, float]:
    """Share of points within WITHIN and within BOUNDS, geometric mean, worst low and high ratio."""
    logs = [math.log(r) if r > 0 else -math.inf for r in ratios]
    return {
        "points": float(len(ratios)),
        "within": float(ratios.between(*WITHIN).mean()),
        "bounded": float(ratios.between(*BOUNDS).mean()),
        "geomean": math.exp(sum(logs) / len(logs)) if all(math.isfinite(x) for x in logs) else 0.0,
        "min": float(ratios.min()),
        "max": float(ratios.max()),
    }
