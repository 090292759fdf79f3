"""Hybrid partition ILP: which decoder layers of a one-GPU replica live in host memory, and how each phase runs them.

Each layer l gets a bit-width b and a placement p (solver.hybrid_costs.PLACEMENTS): on the
GPU, or host-resident and per phase computed on the CPU or streamed to the GPU. With
per-pass resource seconds G (GPU), C (CPU) and P (PCIe) of a phase, a pass takes
T ≥ P and T ≥ G + C (the copy stream overlaps compute; CPU and GPU compute are serial),
so minimising the batch latency n_pre · T_pre + steps · T_dec balances the three.
GPU memory holds the GPU-resident layers, the KV cache of layers decoded on the GPU and
a double buffer for streamed weights; host memory holds the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyomo.environ as pyo

from solver.costmodel import Device, ModelShape, head_seconds
from solver.hybrid_costs import (
    PLACEMENTS,
    Host,
    HybridShape,
    LayerCosts,
    fixed_gpu_bytes,
    layer_costs,
)
from solver.partition import solve_ilp
from solver.quality import quality_budget as loss_budget

STREAM_BUFFERS = 2  # the layer being computed and the one being prefetched
# Seconds charged per host-resident layer in the objective: among layouts of equal latency,
# keep layers on the GPU (host memory and PCIe are shared with the rest of the machine).
HOST_LAYER_TIE_BREAK_S = 1e-6


def build_hybrid_model(
    layers: int,
    costs: dict[tuple[int, str], LayerCosts],
    loss: dict[int, list[float]],
    gpu_capacity: float,
    gpu_fixed: float,
    host_capacity: float,
    head: tuple[float, float],
    prefill_passes: int,
    decode_steps: int,
    quality_budget: float | None,
) -> pyo.ConcreteModel:
    """The hybrid partition ILP for one batch shape; `costs[b, p]` from solver.hybrid_costs.layer_costs.

    A layer's cost depends on its bits and placement, never on which layer it is; its
    quality loss depends on the layer and bits, never on the placement. So bits are chosen
    per layer (y_lb) and placements are counted per bit-width (n_bp): exact, and free of
    the symmetry of per-layer placement binaries.
    """
    m = pyo.ConcreteModel("hybrid_partition")
    m.L = pyo.Set(initialize=range(layers))  # decoder layers l
    m.B = pyo.Set(initialize=sorted({b for b, _ in costs}))  # bit-widths b
    m.P = pyo.Set(initialize=list(PLACEMENTS))  # placements p
    streamed = [p for p in PLACEMENTS if "stream" in PLACEMENTS[p]]
    m.y = pyo.Var(m.L, m.B, domain=pyo.Binary)  # y_lb = 1: layer l at b bits
    m.n = pyo.Var(m.B, m.P, domain=pyo.NonNegativeIntegers, bounds=(0, layers))  # n_bp: layers at b bits placed p
    m.s = pyo.Var(m.B, domain=pyo.Binary)  # s_b = 1: some layer at b bits is streamed
    m.T_pre = pyo.Var(domain=pyo.NonNegativeReals)  # seconds of one prefill pass
    m.T_dec = pyo.Var(domain=pyo.NonNegativeReals)  # seconds of one decode step
    m.S = pyo.Var(domain=pyo.NonNegativeReals)  # GPU staging bytes for streamed weights

    def total(model: pyo.ConcreteModel, value: Callable[[Any], Any]) -> pyo.Expression:
        return sum(model.n[b, p] * value(costs[b, p]) for b in model.B for p in model.P)

    # Σ_b y_lb = 1 : each layer gets one bit-width ; Σ_p n_bp = Σ_l y_lb : and one placement
    m.one_width = pyo.Constraint(m.L, rule=lambda model, l: sum(model.y[l, b] for b in model.B) == 1)
    m.counted = pyo.Constraint(
        m.B, rule=lambda model, b: sum(model.n[b, p] for p in model.P) == sum(model.y[l, b] for l in model.L)
    )
    # n_bp ≤ |L| · s_b for streamed p ; S ≥ 2 · w_b · s_b : a double buffer for the largest streamed layer
    m.streams = pyo.Constraint(m.B, streamed, rule=lambda model, b, p: model.n[b, p] <= layers * model.s[b])
    m.staging = pyo.Constraint(
        m.B, rule=lambda model, b: model.S >= STREAM_BUFFERS * costs[b, "stream"].staging_bytes * model.s[b]
    )
    # fixed + Σ n · gpu_bytes + S ≤ GPU capacity ; Σ n · host_bytes ≤ host capacity
    m.gpu_memory = pyo.Constraint(expr=gpu_fixed + total(m, lambda c: c.gpu_bytes) + m.S <= gpu_capacity)
    m.host_memory = pyo.Constraint(expr=total(m, lambda c: c.host_bytes) <= host_capacity)
    # T ≥ P (PCIe) and T ≥ G + C (compute), per phase; the LM head runs on the GPU
    m.pre_pcie = pyo.Constraint(expr=m.T_pre >= total(m, lambda c: c.prefill.pcie))
    m.pre_compute = pyo.Constraint(expr=m.T_pre >= head[0] + total(m, lambda c: c.prefill.gpu + c.prefill.cpu))
    m.dec_pcie = pyo.Constraint(expr=m.T_dec >= total(m, lambda c: c.decode.pcie))
    m.dec_compute = pyo.Constraint(expr=m.T_dec >= head[1] + total(m, lambda c: c.decode.gpu + c.decode.cpu))
    m.quality_loss = pyo.Expression(expr=sum(m.y[l, b] * loss[b][l] for l in m.L for b in m.B))
    if quality_budget is not None:
        m.quality = pyo.Constraint(expr=m.quality_loss <= quality_budget)  # Σ loss ≤ −ln(quality target)
    m.latency = pyo.Expression(expr=prefill_passes * m.T_pre + decode_steps * m.T_dec)
    host_layers = sum(m.n[b, p] for b in m.B for p in m.P if p != "gpu")
    m.objective = pyo.Objective(expr=m.latency + HOST_LAYER_TIE_BREAK_S * host_layers, sense=pyo.minimize)
    return m


def layer_placements(bits: list[int], counts: dict[tuple[int, str], int]) -> tuple[str, ...]:
    """Per layer, a placement: within each bit-width, GPU-resident layers first, then the host ones in PLACEMENTS order."""
    queues = {b: [p for p in PLACEMENTS for _ in range(counts.get((b, p), 0))] for b in set(bits)}
    return tuple(queues[b].pop(0) for b in bits)


@dataclass(frozen=True)
class HybridPartition:
    """A solved hybrid replica: bits and placement per layer, batch shape, predicted latency."""

    bits: tuple[int, ...]
    placements: tuple[str, ...]  # per layer, a key of PLACEMENTS
    latency_s: float
    quality_loss: float
    batch: int
    prefill_micro_batch: int

    @property
    def host_layers(self) -> tuple[tuple[int, str, str], ...]:
        """(layer, prefill on "cpu"|"stream", decode on "cpu"|"stream") of every host-resident layer."""
        return tuple((l, *PLACEMENTS[p]) for l, p in enumerate(self.placements) if p != "gpu")

    @property
    def requests_per_s(self) -> float:
        return self.batch / self.latency_s if self.latency_s > 0 else 0.0


def phase_seconds(
    model: ModelShape, gpu: Device, host: Host, shape: HybridShape, bits: tuple[int, ...], placements: tuple[str, ...]
) -> tuple[float, float] | None:
    """(one prefill pass, one decode step) seconds of a fixed per-layer (bits, placement); None if memory overflows."""
    costs = layer_costs(model, gpu, host, shape, tuple(sorted(set(bits))))
    chosen = [costs[b, p] for b, p in zip(bits, placements)]
    staging = max((c.staging_bytes for c, p in zip(chosen, placements) if "stream" in PLACEMENTS[p]), default=0.0)
    on_gpu = any(p != "cpu" for p in placements)  # an all-CPU replica needs no GPU at all
    gpu_bytes = fixed_gpu_bytes(model, shape) + sum(c.gpu_bytes for c in chosen) + STREAM_BUFFERS * staging
    if on_gpu and gpu_bytes > gpu.usable_bytes():
        return None
    host_bytes = sum(c.host_bytes for c in chosen) + (0.0 if on_gpu else fixed_gpu_bytes(model, shape))
    if host_bytes > host.usable_bytes():
        return None
    head = head_seconds(model, gpu if on_gpu else host.cpu, shape.step)
    pcie = (sum(c.prefill.pcie for c in chosen), sum(c.decode.pcie for c in chosen)) if on_gpu else (0.0, 0.0)
    pre = max(pcie[0], head[0] + sum(c.prefill.gpu + c.prefill.cpu for c in chosen))
    dec = max(pcie[1], head[1] + sum(c.decode.gpu + c.decode.cpu for c in chosen))
    return pre, dec


def shape_latency(
    model: ModelShape, gpu: Device, host: Host, shape: HybridShape, bits: tuple[int, ...], placements: tuple[str, ...]
) -> float | None:
    """Batch latency (s) of a fixed per-layer (bits, placement) at `shape`, by the ILP's formula; None if memory overflows."""
    seconds = phase_seconds(model, gpu, host, shape, bits, placements)
    if seconds is None:
        return None
    return math.ceil(shape.batch / shape.prefill_mb) * seconds[0] + max(1, math.ceil(shape.output_tokens)) * seconds[1]


def hybrid_partition(
    model: ModelShape,
    gpu: Device,
    host: Host,
    input_tokens: float,
    output_tokens: float,
    quality_target: float,
    layer_loss: dict[int, list[float]],
    bit_widths: tuple[int, ...] = (16, 8, 4),
    batches: tuple[int, ...] = (8, 16, 32, 64, 128),
    prefill_micro_batches: tuple[int, ...] = (1, 4),
    time_limit_s: float | None = None,
) -> HybridPartition | None:
    """The most requests/s hybrid layout of `model` on one `gpu` and its `host`; None if nothing fits.

    Outer search over batch and prefill micro-batch (sequences); the ILP places layers and bits.
    """
    budget = loss_budget(quality_target)
    best: HybridPartition | None = None
    for batch in batches:
        for prefill_mb in [mb for mb in prefill_micro_batches if mb <= batch]:
            shape = HybridShape(batch, prefill_mb, input_tokens, output_tokens)
            costs = layer_costs(model, gpu, host, shape, bit_widths)
            ilp = build_hybrid_model(
                model.layers,
                costs,
                {b: layer_loss[b] for b in bit_widths},
                gpu.usable_bytes(),
                fixed_gpu_bytes(model, shape),
                host.usable_bytes(),
                head_seconds(model, gpu, shape.step),
                math.ceil(batch / prefill_mb),
                max(1, math.ceil(output_tokens)),
                budget,
            )
            if not solve_ilp(ilp, time_limit_s):
                continue
            bits = [b for (_, b), var in sorted(ilp.y.items()) if pyo.value(var) > 0.5]
            counts = {key: round(pyo.value(var)) for key, var in ilp.n.items()}
            found = HybridPartition(
                tuple(bits),
                layer_placements(bits, counts),
                float(pyo.value(ilp.latency)),
                float(pyo.value(ilp.quality_loss)),
                batch,
                prefill_mb,
            )
            if best is None or found.requests_per_s > best.requests_per_s:
                best = found
    return best


@dataclass(frozen=True)
class PlacementRate:
    """A fixed hybrid layout at one batch: seconds of the batch's whole prefill and of one decode step, and requests/s."""

    batch: int
    prefill_s: float
    decode_step_s: float
    requests_per_s: float


def best_batch_rate(
    model: ModelShape,
    gpu: Device,
    host: Host,
    bits: tuple[int, ...],
    placements: tuple[str, ...],
    prefill_mb: int,
    input_tokens: float,
    output_tokens: float,
    batches: tuple[int, ...] = (8, 16, 32, 64, 128, 256),
) -> PlacementRate | None:
    """The batch of `batches` with the most requests/s for a fixed per-layer (bits, placement); None if none fits."""
    best: PlacementRate | None = None
    for batch in batches:
        shape = HybridShape(batch, min(prefill_mb, batch), input_tokens, output_tokens)
        seconds = phase_seconds(model, gpu, host, shape, bits, placements)
        if seconds is None:
            continue
        prefill_s = math.ceil(batch / shape.prefill_mb) * seconds[0]
        rate = PlacementRate(
            batch, prefill_s, seconds[1], batch / (prefill_s + max(1, math.ceil(output_tokens)) * seconds[1])
        )
        if best is None or rate.requests_per_s > best.requests_per_s:
            best = rate
    return best


def hybrid_throughput(
    model: ModelShape, gpu: Device, host: Host, layout: HybridPartition, input_tokens: float, output_tokens: float
) -> float:
    """Requests/s of a solved hybrid layout on requests of other mean lengths, at the layout's own batch (the one its
    workers run); 0.0 if that batch does not fit them."""
    rate = best_batch_rate(
        model,
        gpu,
        host,
        layout.bits,
        layout.placements,
        layout.prefill_micro_batch,
        input_tokens,
        output_tokens,
        (layout.batch,),
    )
    return 0.0 if rate is None else rate.requests_per_s
