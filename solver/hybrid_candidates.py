"""CPU–GPU hybrid replicas as fleet candidates: one replica per GPU, some layers in that GPU's share of host RAM.

Only GPU instance shapes on which the model fits no single GPU at any bit-width the
quality target allows are tried (where it fits, the whole-model and partition-ILP
candidates already cover it), cheapest per GPU first, at most TOP_SHAPES of them. Each
GPU of an instance runs its own replica with 1/gpu_count of the vCPUs and RAM. The hybrid
ILP lays out the heaviest class; that layout is then costed on every class, so the fleet
MILP sees the configuration as one more candidate and picks it only when it is cheapest.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from solver.candidates import Candidate, offering_label, purchase_options
from solver.costmodel import Device, ModelShape
from solver.device_profile import CpuProfile
from solver.hybrid_costs import host_of
from solver.hybrid_partition import HybridPartition, hybrid_partition, hybrid_throughput
from solver.partition_candidates import heaviest_class
from solver.quality import model_layer_loss
from solver.workload import Workload

if TYPE_CHECKING:
    import pandas as pd

TOP_SHAPES = 4
Shape = tuple[str, int, int, float]  # GPU, GPUs per instance, vCPUs, host GiB


def shapes_needing_host(offerings: pd.DataFrame, uniform: list[Candidate], top: int = TOP_SHAPES) -> list[Shape]:
    """GPU instance shapes with no one-GPU whole-model candidate, cheapest $/h per GPU first (at most `top`)."""
    fits = {c.offering for c in uniform if c.tp == 1 and c.whole_model_uniform}
    per_gpu: dict[Shape, float] = {}
    for idx, row in offerings.iterrows():
        if row["gpu"] == "cpu" or row["availability"] <= 0 or int(idx) in fits:
            continue
        shape = (str(row["gpu"]), int(row["gpu_count"]), int(row["vcpus"]), float(row["host_memory_gib"]))
        per_gpu[shape] = min(per_gpu.get(shape, math.inf), float(row["price_per_hour"]) / shape[1])
    return sorted(per_gpu, key=lambda s: per_gpu[s])[:top]


def hybrid_candidates(
    offerings: pd.DataFrame, specs: pd.DataFrame, model: ModelShape, workload: Workload, quality_target: float,
    spot: bool, bit_widths: tuple[int, ...], uniform: list[Candidate], cpu_profile: dict[str, Any] | None = None,
) -> list[Candidate]:
    """Hybrid candidates (requests/s per whole instance) for the shapes of `shapes_needing_host`.

    `specs` is gpus.csv indexed by GPU name; `cpu_profile` (`costserve profile --device cpu`
    of this model) times host-computed layers instead of the CPU roofline.
    """
    layer_loss = model_layer_loss(model.name, model.layers)
    heavy = heaviest_class(workload)
    measured_cpu = CpuProfile.matching(cpu_profile, model.name, model.layers)
    layouts: dict[Shape, tuple[HybridPartition, list[float]] | None] = {}
    for gpu, gpus, vcpus, memory in shapes_needing_host(offerings, uniform):
        device = Device.from_catalog(specs.loc[gpu], 1)
        host = host_of(specs.loc["cpu"], max(1, vcpus // gpus), memory / gpus, float(specs.loc[gpu]["pcie_gbps"]), measured_cpu)
        layout = hybrid_partition(model, device, host, heavy.input_tokens, heavy.output_tokens, quality_target, layer_loss, bit_widths)
        if layout is None or not layout.host_layers:
            layouts[(gpu, gpus, vcpus, memory)] = None
            continue
        rates = [hybrid_throughput(model, device, host, layout, c.input_tokens, c.output_tokens) for c in workload.classes]
        layouts[(gpu, gpus, vcpus, memory)] = (layout, rates) if any(rates) else None
    out: list[Candidate] = []
    for idx, row in offerings.iterrows():
        found = layouts.get((str(row["gpu"]), int(row["gpu_count"]), int(row["vcpus"]), float(row["host_memory_gib"])))
        if found is None or row["availability"] <= 0:
            continue
        layout, rates = found
        gpus = int(row["gpu_count"])
        for is_spot, price, keep in purchase_options(row, spot):
            out.append(Candidate(
                offering=int(idx), label=offering_label(row, is_spot), gpu=str(row["gpu"]), gpus_per_instance=gpus,
                spot=is_spot, price_per_hour=price, tp=1, replicas=gpus, bits=min(layout.bits),
                quality=math.exp(-layout.quality_loss), requests_per_s=tuple(r * gpus * keep for r in rates),
                stages=((0, model.layers - 1, layout.bits),), prefill_micro_batch=layout.prefill_micro_batch,
                decode_micro_batch=layout.batch, host_layers=layout.host_layers,
            ))
    return out
