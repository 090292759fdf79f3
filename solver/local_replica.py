"""The replica the embedded backend runs on this machine: pipeline stages with per-layer bits from the quality profile.

Bits per layer come from the partition ILP (solver/partition.py) over one device with no
memory limit: minimise the decode step time subject to the quality target, each layer at
16 (bf16), 8 (int8) or 4 (int4) bits — a multiple-choice knapsack HiGHS solves exactly.
Per-layer decode times come from this machine's `costserve profile` when there is one,
else from the relative times below.
"""

from __future__ import annotations

import math
from pathlib import Path

from solver.partition import StageCosts, build_partition_model, solve_partition_model
from solver.plan import Replica, Stage
from solver.quality import model_layer_loss, quality_budget

# ms per SmolLM2 decoder layer at batch 16, 256 cached tokens, on the 2-core development
# machine (`costserve profile`, 2026-11-21): relative decode time when no profile exists.
DEFAULT_LAYER_DECODE_MS = {16: 1.0 / 148, 8: 1.0 / 160, 4: 1.0 / 175}
LOCAL_BITS = (16, 8, 4)


def profile_layer_ms(profile_path: Path | None, batch: int = 16, context: int = 512) -> dict[int, float]:
    """Per-layer decode ms by bit-width from a `costserve profile` file, else DEFAULT_LAYER_DECODE_MS."""
    if profile_path is None or not profile_path.is_file():
        return DEFAULT_LAYER_DECODE_MS
    from solver.device_profile import layer_decode_ms, load_device_profile

    profile = load_device_profile(profile_path)
    return {b: layer_decode_ms(profile, b, batch, context) for b in LOCAL_BITS}


def local_bits(
    model_name: str, layers: int, quality_target: float, layer_ms: dict[int, float] | None = None
) -> list[int]:
    """Fastest bits per layer whose predicted quality meets `quality_target` (the partition ILP on one device)."""
    times = layer_ms or DEFAULT_LAYER_DECODE_MS
    loss = model_layer_loss(model_name, layers)
    stage = StageCosts(
        "cpu",
        math.inf,
        0.0,
        {b: 0.0 for b in LOCAL_BITS},
        {b: 0.0 for b in LOCAL_BITS},
        {b: times[b] for b in LOCAL_BITS},
    )
    budget = quality_budget(quality_target)
    found = solve_partition_model(
        build_partition_model(layers, [stage], {b: loss[b] for b in LOCAL_BITS}, 1, 1, 1, budget), [stage]
    )
    if found is None:  # even 16 bits everywhere misses the target (bf16 itself loses a little): the best there is
        return [16] * layers
    return list(found.stages[0][3])


def local_replica(
    model_name: str,
    layers: int,
    quality_target: float,
    stages: int = 2,
    prefill_micro_batch: int = 8,
    decode_micro_batch: int = 16,
    layer_ms: dict[int, float] | None = None,
) -> Replica:
    """A `stages`-stage replica of contiguous, near-equal layer ranges with `local_bits`; micro-batches in sequences."""
    bits = local_bits(model_name, layers, quality_target, layer_ms)
    bounds = [round(i * layers / stages) for i in range(stages + 1)]
    return Replica(
        tp=1,
        stages=[
            Stage(device="cpu", first_layer=a, last_layer=b - 1, bits=bits[a:b]) for a, b in zip(bounds, bounds[1:])
        ],
        prefill_micro_batch=prefill_micro_batch,
        decode_micro_batch=decode_micro_batch,
    )
