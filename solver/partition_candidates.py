"""Mixed-precision and pipelined replica configurations from the partition ILP (LLM-PQ) as fleet candidates.

`solver.candidates` gives every offering its whole-model, one-bit-width configurations (the
fast roofline path). This module adds the layouts those cannot express: some layers at a
lower bit-width where the quality target leaves room, and pipelines of `pp` stages of `tp`
GPUs across one instance. For each instance shape (GPU type × GPU count) and layout, the
partition ILP places layers and bits for the workload's heaviest class; the configuration
it finds is then costed on every class, so the fleet MILP sees it as one more candidate.

Pruned so a plan over the whole catalog stays at seconds (the issue's "outer search ...
pruned"): only the TOP_SHAPES instance shapes whose best uniform configuration is cheapest
per request of the heaviest class are partitioned; on each, mixed bits use the tensor-parallel
degree of that best uniform configuration, pipelines use 2 stages; each ILP stops after
ILP_TIME_LIMIT_S with its best placement.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from solver.candidates import Candidate, offering_label, purchase_options
from solver.costmodel import Device, ModelShape
from solver.partition import Partition, partition_replica, partition_throughput
from solver.quality import model_layer_loss, quality_budget
from solver.workload import Workload, WorkloadClass

if TYPE_CHECKING:
    import pandas as pd

# Outer search of the partition ILP per layout (LLM-PQ searches more; these keep a plan
# over the whole catalog to a few seconds): global batch, prefill micro-batch.
SEARCH_BATCHES = (64, 256)
SEARCH_PREFILL_MICRO_BATCHES = (1,)
PIPELINE_DEPTHS = (2,)
TOP_SHAPES = 4
ILP_TIME_LIMIT_S = 1.0
Layout = tuple[int, int, Partition, list[float]]  # tp, pp, partition, requests/s per class (one replica)


def heaviest_class(workload: Workload) -> WorkloadClass:
    """The class with the most tokens (prompt + output) in the batch: the one a layout is tuned for."""
    return max(workload.classes, key=lambda c: c.input_tokens_total + c.output_tokens_total)


def mixing_can_help(layer_loss: dict[int, list[float]], quality_target: float, bit_widths: tuple[int, ...]) -> bool:
    """True when the quality target admits some layer below the lowest uniform bit-width it allows."""
    if quality_target <= 0:
        return False  # every uniform bit-width is allowed: the lowest is already the fastest
    budget = quality_budget(quality_target)
    assert budget is not None  # quality_target > 0
    allowed = [b for b in bit_widths if sum(layer_loss[b]) <= budget]
    if not allowed:
        return False
    lowest = min(allowed)
    base = sum(layer_loss[lowest])
    return any(
        base + min(lo - hi for lo, hi in zip(layer_loss[b], layer_loss[lowest])) <= budget
        for b in bit_widths
        if b < lowest
    )


def stage_link_gbps(gpu_row: pd.Series) -> float:
    """GB/s between pipeline stages inside one instance: NVLink where the GPU has it, else PCIe."""
    nvlink = float(gpu_row["nvlink_gbps"] or 0)
    return nvlink if gpu_row["interconnect"] == "NVLink" and nvlink > 0 else float(gpu_row["pcie_gbps"])


def instance_layouts(
    model: ModelShape,
    gpu_row: pd.Series,
    gpu_count: int,
    workload: Workload,
    quality_target: float,
    layer_loss: dict[int, list[float]],
    bit_widths: tuple[int, ...],
    mix_tp: int | None,
) -> list[Layout]:
    """Partition-ILP layouts of one instance shape: mixed bits on `mix_tp` GPUs (None: none), and pp-stage pipelines over all its GPUs."""
    shapes = [(mix_tp, 1)] if mix_tp else []
    shapes += [(gpu_count // pp, pp) for pp in PIPELINE_DEPTHS if pp <= gpu_count and gpu_count % pp == 0]
    heavy = heaviest_class(workload)
    link = stage_link_gbps(gpu_row)
    out: list[Layout] = []
    for tp, pp in shapes:
        devices = [(Device.from_catalog(gpu_row, tp), link)] * pp
        part = partition_replica(
            model,
            devices,
            heavy.input_tokens,
            heavy.output_tokens,
            quality_target,
            layer_loss,
            bit_widths,
            SEARCH_BATCHES,
            SEARCH_PREFILL_MICRO_BATCHES,
            ILP_TIME_LIMIT_S,
        )
        if part is None or (pp == 1 and len({b for s in part.stages for b in s[3]}) == 1):
            continue  # nothing fits, or a uniform whole model: solver.candidates already has it
        # every class at the layout's own batch: the one its workers run (a worker has one batch size)
        rates = [
            partition_throughput(model, devices, part, c.input_tokens, c.output_tokens, (part.batch,))[0]
            for c in workload.classes
        ]
        if any(rates):
            out.append((tp, pp, part, rates))
    return out


def promising_shapes(uniform: list[Candidate], workload: Workload, top: int = TOP_SHAPES) -> dict[tuple[str, int], int]:
    """The `top` GPU instance shapes cheapest per request of the heaviest class, each with the tp of its best uniform candidate."""
    k = workload.classes.index(heaviest_class(workload))
    best: dict[tuple[str, int], tuple[float, int]] = {}
    for c in uniform:
        if c.gpu == "cpu" or c.requests_per_s[k] <= 0:
            continue
        dollars_per_request = c.price_per_hour / c.requests_per_s[k]
        shape = (c.gpu, c.gpus_per_instance)
        if shape not in best or dollars_per_request < best[shape][0]:
            best[shape] = (dollars_per_request, c.tp)
    ranked = sorted(best.items(), key=lambda item: item[1][0])[:top]
    return {shape: tp for shape, (_, tp) in ranked}


def partitioned_candidates(
    offerings: pd.DataFrame,
    specs: pd.DataFrame,
    model: ModelShape,
    workload: Workload,
    quality_target: float,
    spot: bool,
    bit_widths: tuple[int, ...],
    calibration: dict[str, list[float]],
    uniform: list[Candidate],
) -> list[Candidate]:
    """Candidates for the partition-ILP layouts of the most promising GPU instance shapes (requests/s per whole instance).

    `specs` is gpus.csv indexed by GPU name; `calibration` scales a profiled GPU's rates per
    class; `uniform` are the whole-model candidates that rank the shapes.
    """
    layer_loss = model_layer_loss(model.name, model.layers)
    mix = mixing_can_help(layer_loss, quality_target, bit_widths)
    shapes = promising_shapes(uniform, workload)
    layouts: dict[tuple[str, int], list[Layout]] = {}  # clouds and regions selling one shape share its layouts
    out: list[Candidate] = []
    for idx, row in offerings.iterrows():
        shape = (str(row["gpu"]), int(row["gpu_count"]))
        if row["availability"] <= 0 or shape not in shapes:
            continue
        if shape not in layouts:
            layouts[shape] = instance_layouts(
                model,
                specs.loc[shape[0]],
                shape[1],
                workload,
                quality_target,
                layer_loss,
                bit_widths,
                shapes[shape] if mix else None,
            )
        for tp, pp, part, rates in layouts[shape]:
            factors = calibration.get(shape[0], [1.0] * len(rates))
            replicas = shape[1] // (tp * pp)
            stages = tuple((first, last, tuple(bits)) for _, first, last, bits in part.stages)
            for is_spot, price, keep in purchase_options(row, spot):
                out.append(
                    Candidate(
                        offering=int(idx),
                        label=offering_label(row, is_spot),
                        gpu=shape[0],
                        gpus_per_instance=shape[1],
                        spot=is_spot,
                        price_per_hour=price,
                        tp=tp,
                        replicas=replicas,
                        bits=min(b for s in stages for b in s[2]),
                        quality=math.exp(-part.quality_loss),
                        requests_per_s=tuple(r * f * replicas * keep for r, f in zip(rates, factors)),
                        stages=stages,
                        prefill_micro_batch=part.prefill_micro_batch,
                        decode_micro_batch=part.decode_micro_batch,
                    )
                )
    return out
