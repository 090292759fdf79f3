"""Layer/bit partition of one replica over an ordered list of devices (LLM-PQ, arXiv 2403.01136).

Each decoder layer l gets a device d (contiguous stages, every device used, in order) and a
bit-width b. With per-micro-batch stage times T_d (prefill and decode separately) and n
micro-batches, a phase takes Σ_d T_d + (n − 1) · max_d T_d (pipeline fill, then the slowest
stage paces the rest). Memory must hold each stage's weights and KV cache; the quality
indicator Σ loss(l, b) is bounded by the target, or weighted into the objective.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyomo.environ as pyo

from solver.costmodel import Device, ModelShape, StepShape, layer_seconds, workspace_bytes
from solver.quality import quality_budget as loss_budget


@dataclass(frozen=True)
class StageCosts:
    """What one device costs per layer at each bit-width (bytes, seconds per micro-batch)."""

    name: str
    capacity: float  # bytes available for layers and their KV cache
    fixed: float  # bytes the stage needs regardless of layers (embeddings, LM head, workspace)
    layer_bytes: dict[int, float]  # weights + KV cache of one layer at b bits
    prefill_s: dict[int, float]  # one layer, one prefill micro-batch
    decode_s: dict[int, float]  # one layer, one decode step of one decode micro-batch
    send_prefill_s: float = 0.0  # activations of a prefill micro-batch to the next stage
    send_decode_s: float = 0.0


def build_partition_model(
    layers: int,
    stages: list[StageCosts],
    loss: dict[int, list[float]],
    prefill_micro_batches: int,
    decode_micro_batches: int,
    decode_steps: int,
    quality_budget: float | None = None,
    quality_weight: float = 0.0,
) -> pyo.ConcreteModel:
    """The partition ILP for one device order. `loss[b][l]`: quality loss of layer l at b bits."""
    bits = sorted(stages[0].layer_bytes)
    m = pyo.ConcreteModel("partition")
    m.L = pyo.Set(initialize=range(layers))  # decoder layers l
    m.D = pyo.Set(initialize=range(len(stages)))  # devices d, in pipeline order
    m.B = pyo.Set(initialize=bits)  # bit-widths b
    m.z = pyo.Var(m.L, m.D, m.B, domain=pyo.Binary)  # z_ldb = 1: layer l on device d at b bits
    m.T_pre = pyo.Var(m.D, domain=pyo.NonNegativeReals)  # prefill stage time per micro-batch
    m.T_dec = pyo.Var(m.D, domain=pyo.NonNegativeReals)  # decode stage time per step
    m.T_pre_max = pyo.Var(domain=pyo.NonNegativeReals)
    m.T_dec_max = pyo.Var(domain=pyo.NonNegativeReals)

    def on(model: pyo.ConcreteModel, l: int, d: int) -> pyo.Expression:
        return sum(model.z[l, d, b] for b in model.B)

    # Σ_{d,b} z_ldb = 1 : each layer exactly once
    m.placed = pyo.Constraint(m.L, rule=lambda model, l: sum(on(model, l, d) for d in model.D) == 1)
    # stage(l) ≤ stage(l+1) : layers flow forward through the devices (contiguous stages)
    m.ordered = pyo.Constraint(
        [l for l in range(layers - 1)],
        rule=lambda model, l: sum(d * on(model, l, d) for d in model.D) <= sum(d * on(model, l + 1, d) for d in model.D),
    )
    # Σ_l y_ld ≥ 1 : every device holds at least one layer
    m.used = pyo.Constraint(m.D, rule=lambda model, d: sum(on(model, l, d) for l in model.L) >= 1)
    # fixed_d + Σ z_ldb · bytes_db ≤ capacity_d : memory
    m.memory = pyo.Constraint(
        m.D, rule=lambda model, d: stages[d].fixed + sum(model.z[l, d, b] * stages[d].layer_bytes[b] for l in model.L for b in model.B)
        <= stages[d].capacity,
    )
    last = len(stages) - 1
    # T_d = Σ z_ldb · t_db (+ sending to the next stage)
    m.pre_time = pyo.Constraint(m.D, rule=lambda model, d: model.T_pre[d] == sum(
        model.z[l, d, b] * stages[d].prefill_s[b] for l in model.L for b in model.B) + (stages[d].send_prefill_s if d < last else 0.0))
    m.dec_time = pyo.Constraint(m.D, rule=lambda model, d: model.T_dec[d] == sum(
        model.z[l, d, b] * stages[d].decode_s[b] for l in model.L for b in model.B) + (stages[d].send_decode_s if d < last else 0.0))
    m.pre_max = pyo.Constraint(m.D, rule=lambda model, d: model.T_pre_max >= model.T_pre[d])
    m.dec_max = pyo.Constraint(m.D, rule=lambda model, d: model.T_dec_max >= model.T_dec[d])
    m.quality_loss = pyo.Expression(expr=sum(m.z[l, d, b] * loss[b][l] for l in m.L for d in m.D for b in m.B))
    if quality_budget is not None:
        m.quality = pyo.Constraint(expr=m.quality_loss <= quality_budget)  # Σ loss ≤ −ln(quality target)
    # batch latency: prefill Σ_d T_d + (n_p − 1)·max T, then each decode step Σ_d T_d + (n_d − 1)·max T
    m.latency = pyo.Expression(
        expr=sum(m.T_pre[d] for d in m.D) + (prefill_micro_batches - 1) * m.T_pre_max
        + decode_steps * (sum(m.T_dec[d] for d in m.D) + (decode_micro_batches - 1) * m.T_dec_max)
    )
    m.objective = pyo.Objective(expr=m.latency + quality_weight * m.quality_loss, sense=pyo.minimize)
    return m


@dataclass(frozen=True)
class Partition:
    """A solved partition: per stage (device, first layer, last layer, bits per layer)."""

    stages: tuple[tuple[str, int, int, tuple[int, ...]], ...]
    latency_s: float
    quality_loss: float
    batch: int = 0
    prefill_micro_batch: int = 0
    decode_micro_batch: int = 0

    @property
    def requests_per_s(self) -> float:
        return self.batch / self.latency_s if self.latency_s > 0 else 0.0


def solve_ilp(model: pyo.ConcreteModel, time_limit_s: float | None = None) -> bool:
    """Solve with HiGHS and load the solution; False when it is infeasible (or nothing was found in time).

    With `time_limit_s`, the best incumbent found by then is loaded; without, the optimum.
    """
    options = {} if time_limit_s is None else {"timelimit": time_limit_s}
    result = pyo.SolverFactory("appsi_highs").solve(model, load_solutions=False, **options)
    condition = result.solver.termination_condition
    timed_out = condition == pyo.TerminationCondition.maxTimeLimit and len(result.solution) > 0
    if condition != pyo.TerminationCondition.optimal and not timed_out:
        return False
    if timed_out:
        result.solver.status = pyo.SolverStatus.ok  # a usable incumbent, not an error: load it quietly
    model.solutions.load_from(result)
    return True


def solve_partition_model(model: pyo.ConcreteModel, stages: list[StageCosts], time_limit_s: float | None = None) -> Partition | None:
    """Solve with HiGHS; None when no partition fits.

    With `time_limit_s`, the best placement found by then is kept (pipelines of identical
    devices are symmetric, which can make proving optimality slow); without, it is optimal.
    """
    if not solve_ilp(model, time_limit_s):
        return None
    placed = sorted((l, d, b) for (l, d, b), var in model.z.items() if pyo.value(var) > 0.5)
    out = []
    for d, run in itertools.groupby(placed, key=lambda t: t[1]):
        group = list(run)
        out.append((stages[d].name, group[0][0], group[-1][0], tuple(b for _, _, b in group)))
    return Partition(tuple(out), float(pyo.value(model.latency)), float(pyo.value(model.quality_loss)))


def stage_costs(
    model: ModelShape, device: Device, batch: int, prefill_mb: int, decode_mb: int,
    input_tokens: float, output_tokens: float, first: bool, last: bool, link_gbps: float,
    bit_widths: tuple[int, ...],
) -> StageCosts:
    """Cost tables of one device as one pipeline stage: solver.costmodel's per-layer roofline, per bit-width."""
    fixed: float = model.vocab * model.hidden * 2 * (int(first) + int(last and not (first and model.tied_embeddings)))
    fixed += workspace_bytes(model, prefill_mb * input_tokens, 0)
    step = StepShape(prefill_mb, input_tokens, decode_mb, input_tokens + output_tokens / 2)
    kv_layer = model.layer_kv_bytes_per_token() * (input_tokens + output_tokens) * batch
    layer_bytes = {b: model.layer_weight_bytes(b) + kv_layer for b in bit_widths}
    seconds = {b: layer_seconds(model, device, b, step) for b in bit_widths}
    link = link_gbps * 1e9
    return StageCosts(
        name=device.name, capacity=device.usable_bytes(), fixed=fixed, layer_bytes=layer_bytes,
        prefill_s={b: s[0] for b, s in seconds.items()}, decode_s={b: s[1] for b, s in seconds.items()},
        send_prefill_s=prefill_mb * input_tokens * model.hidden * 2 / link if link else 0.0,
        send_decode_s=decode_mb * model.hidden * 2 / link if link else 0.0,
    )


def partition_replica(
    model: ModelShape,
    devices: list[tuple[Device, float]],
    input_tokens: float,
    output_tokens: float,
    quality_target: float,
    layer_loss: dict[int, list[float]],
    bit_widths: tuple[int, ...] = (16, 8, 4),
    batches: tuple[int, ...] = (16, 64, 256),
    prefill_micro_batches: tuple[int, ...] = (1, 2, 4, 8),
    time_limit_s: float | None = None,
) -> Partition | None:
    """Best partition of `model` over `devices` ((Device, link GB/s to the next stage) pairs).

    Outer search as in LLM-PQ: every distinct device order × global batch × prefill and
    decode micro-batch sizes (powers of two dividing the batch; decode micro-batches at
    least one per stage); the inner ILP places layers and bits. Best = most requests/s.
    """
    budget = loss_budget(quality_target)
    best: Partition | None = None
    def kinds(order: tuple[int, ...]) -> tuple[str, ...]:
        return tuple(devices[i][0].name for i in order)

    seen_orders: set[tuple[str, ...]] = set()
    for order in sorted(itertools.permutations(range(len(devices))), key=kinds):
        if kinds(order) in seen_orders:  # identical devices in another order: same problem
            continue
        seen_orders.add(kinds(order))
        n = len(order)
        for batch in batches:
            prefill_options = [m for m in prefill_micro_batches if m <= batch]
            decode_options = sorted({max(1, batch // k) for k in (n, 2 * n) if batch // k >= 1})
            for prefill_mb, decode_mb in itertools.product(prefill_options, decode_options):
                stages = [
                    stage_costs(model, devices[i][0], batch, prefill_mb, decode_mb, input_tokens, output_tokens,
                                pos == 0, pos == n - 1, devices[i][1], bit_widths)
                    for pos, i in enumerate(order)
                ]
                # prune: the sum of capacities must hold the model at its smallest bits
                if sum(s.capacity - s.fixed for s in stages) < model.layers * min(s.layer_bytes[min(bit_widths)] for s in stages):
                    continue
                ilp = build_partition_model(model.layers, stages, {b: layer_loss[b] for b in bit_widths},
                                            math.ceil(batch / prefill_mb), math.ceil(batch / decode_mb),
                                            max(1, math.ceil(output_tokens)), budget)
                found = solve_partition_model(ilp, stages, time_limit_s)
                if found is None:
                    continue
                found = Partition(found.stages, found.latency_s, found.quality_loss, batch, prefill_mb, decode_mb)
                if best is None or found.requests_per_s > best.requests_per_s:
                    best = found
    return best


def assignment_latency(
    stages: list[StageCosts], placement: Sequence[tuple[int, int]], prefill_micro_batches: int,
    decode_micro_batches: int, decode_steps: int,
) -> float | None:
    """Batch latency (s) of a fixed placement — (stage, bits) per layer — by the ILP's formula; None if a stage overflows."""
    used = [s.fixed for s in stages]
    pre = [0.0] * len(stages)
    dec = [0.0] * len(stages)
    for d, b in placement:
        used[d] += stages[d].layer_bytes[b]
        pre[d] += stages[d].prefill_s[b]
        dec[d] += stages[d].decode_s[b]
    if any(u > s.capacity for u, s in zip(used, stages)):
        return None
    for d in range(len(stages) - 1):
        pre[d] += stages[d].send_prefill_s
        dec[d] += stages[d].send_decode_s
    return (sum(pre) + (prefill_micro_batches - 1) * max(pre)
            + decode_steps * (sum(dec) + (decode_micro_batches - 1) * max(dec)))


def partition_throughput(
    model: ModelShape,
    devices: list[tuple[Device, float]],
    partition: Partition,
    input_tokens: float,
    output_tokens: float,
    batches: tuple[int, ...] = (8, 16, 32, 64, 128, 256),
) -> tuple[float, int]:
    """(requests/s, batch) of a solved partition on requests of other mean lengths (0.0, 0 if none fits).

    `devices` are in stage order. The layout and bits stay as solved; the batch is the best of
    `batches` that fits every stage, with the micro-batches scaled from the solved ones.
    """
    placement = [(d, b) for d, stage in enumerate(partition.stages) for b in stage[3]]
    bit_widths = tuple(sorted({b for _, b in placement}))
    n = len(devices)
    best = (0.0, 0)
    for batch in batches:
        prefill_mb = min(max(1, partition.prefill_micro_batch), batch)
        decode_mb = max(1, round(batch * partition.decode_micro_batch / partition.batch)) if partition.batch else max(1, batch // n)
        stages = [
            stage_costs(model, dev, batch, prefill_mb, decode_mb, input_tokens, output_tokens, pos == 0, pos == n - 1, link, bit_widths)
            for pos, (dev, link) in enumerate(devices)
        ]
        latency = assignment_latency(stages, placement, math.ceil(batch / prefill_mb), math.ceil(batch / decode_mb),
                                     max(1, math.ceil(output_tokens)))
        if latency is not None and latency > 0 and batch / latency > best[0]:
            best = (batch / latency, batch)
    return best
