"""Roofline cost model: memory, prefill and decode time, throughput of a replica per workload class.

A replica here is `tp` devices of one kind working as one (tensor parallel), holding every
decoder layer at its bit-width. Prefill is compute-bound (FLOPs / effective peak); a decode
step reads every weight and the batch's KV cache once (bytes / effective bandwidth) unless
the batch is large enough to hit the compute roof. Units: seconds, bytes, GiB, tokens.
The efficiency constants below are typical published figures, to be replaced by measured
profiles (`costserve profile`, Mélange-format tables) when they exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections import Counter
from typing import Any

GIB = 2**30
# Achieved fraction of peak tensor FLOPs in prefill; vLLM/SGLang prefill typically reaches
# 40-60% model FLOPs utilisation on A100/H100.
PREFILL_EFFICIENCY = 0.5
# Achieved fraction of peak memory bandwidth in decode (paged-attention engines report 60-80%).
DECODE_BANDWIDTH_EFFICIENCY = 0.7
# Share of device memory the engine may use (vLLM's gpu_memory_utilization default).
MEMORY_UTILIZATION = 0.9
# CUDA context, allocator and framework, per device (GiB); the OS and runtime on a CPU host.
RUNTIME_OVERHEAD_GIB = {"gpu": 1.0, "cpu": 4.0}
# Tensor-parallel scaling of compute per extra device, by link.
TP_EFFICIENCY = {"NVLink": 0.9, "PCIe": 0.75, None: 0.75}
# Weight-only quantisation: stored bits per weight including scales (int8 per-channel:
# one fp16 scale per row, negligible; int4 group 64: one fp16 scale per 64 weights).
STORED_BITS = {16: 16.0, 8: 8.0, 4: 4.25, 3: 3.25}
# Extra compute for dequantising weights inside the matmul (weight-only kernels).
DEQUANT_OVERHEAD = {16: 1.0, 8: 1.1, 4: 1.2, 3: 1.3}
KV_BYTES_PER_VALUE = 2  # fp16/bf16 KV cache
MAX_BATCH = 256  # concurrent sequences per replica, as serving engines cap them
PREFILL_CHUNK_TOKENS = 8192  # activation workspace is sized for this many tokens at once


@dataclass(frozen=True)
class ModelShape:
    """Architecture facts of a decoder-only model (a row of models.csv)."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    experts: int = 1
    experts_per_token: int = 1
    tied_embeddings: bool = False

    @classmethod
    def from_row(cls, row: Any) -> "ModelShape":
        """From a models.csv row (a pandas Series or a dict with the same keys)."""
        return cls(
            name=row["model"], layers=int(row["layers"]), hidden=int(row["hidden"]), intermediate=int(row["intermediate"]),
            heads=int(row["heads"]), kv_heads=int(row["kv_heads"]), vocab=int(row["vocab"]), experts=int(row["experts"]),
            experts_per_token=int(row["experts_per_token"]), tied_embeddings=bool(row["tied_embeddings"]),
        )

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def _attention_params(self) -> int:
        kv = self.kv_heads * self.head_dim
        return 2 * self.hidden * self.hidden + 2 * self.hidden * kv  # q, o; k, v

    def layer_params(self) -> int:
        """Stored parameters of one decoder layer (all experts)."""
        return self._attention_params() + 3 * self.hidden * self.intermediate * self.experts

    def layer_active_params(self) -> int:
        """Parameters one token multiplies through in one decoder layer (routed experts only)."""
        return self._attention_params() + 3 * self.hidden * self.intermediate * self.experts_per_token

    def embedding_params(self) -> int:
        """Token embedding plus LM head (kept at 16 bits)."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def kv_bytes_per_token(self) -> int:
        """KV cache bytes one token of context costs across all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * KV_BYTES_PER_VALUE

    def layer_kv_bytes_per_token(self) -> float:
        """KV cache bytes one token of context costs in one decoder layer."""
        return self.kv_bytes_per_token() / self.layers

    def layer_weight_bytes(self, bits: int) -> float:
        """Stored bytes of one decoder layer's weights at `bits` bits (quantisation scales included)."""
        return self.layer_params() * STORED_BITS[bits] / 8

    def activation_bytes(self, tokens: float) -> float:
        """Hidden and MLP activations (fp16 bytes) of `tokens` tokens computed in one pass."""
        return tokens * (4 * self.hidden + 2 * self.intermediate) * 2


@dataclass(frozen=True)
class Device:
    """The hardware of one replica: `count` devices of one kind acting as one (tensor parallel).

    memory_gib, tflops and bandwidth_gbps are per device; `kind` is "gpu" or "cpu".
    """

    name: str
    kind: str
    memory_gib: float
    tflops: float
    bandwidth_gbps: float
    count: int = 1
    interconnect: str | None = None

    @classmethod
    def from_catalog(cls, gpu_row: Any, count: int = 1, vcpus: int = 0, host_memory_gib: float = 0.0) -> "Device":
        """From a gpus.csv row; the `cpu` row (per vCPU) is scaled by the offering's vCPUs and RAM."""
        if bool(gpu_row["per_vcpu"]):
            return cls(gpu_row["gpu"], "cpu", host_memory_gib, gpu_row["bf16_tflops"] * vcpus,
                       gpu_row["mem_bandwidth_gbps"] * vcpus, 1, None)
        interconnect = gpu_row["interconnect"] if isinstance(gpu_row["interconnect"], str) else None
        return cls(gpu_row["gpu"], "gpu", float(gpu_row["memory_gib"]), float(gpu_row["bf16_tflops"]),
                   float(gpu_row["mem_bandwidth_gbps"]), count, interconnect)

    def usable_bytes(self) -> float:
        """Memory the engine may fill, all devices together (bytes)."""
        per = self.memory_gib * MEMORY_UTILIZATION - RUNTIME_OVERHEAD_GIB[self.kind]
        return max(0.0, per) * self.count * GIB

    def effective_flops(self) -> float:
        """Sustained FLOP/s in prefill across the replica's devices."""
        scale = 1 + (self.count - 1) * TP_EFFICIENCY[self.interconnect]
        return self.tflops * 1e12 * PREFILL_EFFICIENCY * scale

    def effective_bandwidth(self) -> float:
        """Sustained bytes/s of weight and KV reads across the replica's devices."""
        return self.bandwidth_gbps * 1e9 * DECODE_BANDWIDTH_EFFICIENCY * self.count


def weight_bytes(model: ModelShape, bits: tuple[int, ...]) -> float:
    """Bytes of all weights with decoder layer i at bits[i] (embeddings at 16 bits)."""
    if len(bits) != model.layers:
        raise ValueError(f"bits: {len(bits)} entries for {model.layers} layers")
    layers = sum(model.layer_weight_bytes(b) for b in bits)
    return layers + model.embedding_params() * 2


def workspace_bytes(model: ModelShape, prefill_tokens: float, logit_rows: int) -> float:
    """Activation workspace (bytes): one prefill pass of `prefill_tokens` tokens, plus `logit_rows` rows of fp32 logits."""
    return model.activation_bytes(prefill_tokens) + logit_rows * model.vocab * 4


@dataclass(frozen=True)
class StepShape:
    """The work of one prefill pass and one decode step.

    A prefill pass runs `prefill_sequences` prompts of `prompt_tokens` tokens each; a decode
    step runs `decode_batch` sequences holding `context_tokens` tokens of context each.
    """

    prefill_sequences: float
    prompt_tokens: float
    decode_batch: float
    context_tokens: float


def layer_seconds(model: ModelShape, device: Device, bits: int, step: StepShape) -> tuple[float, float]:
    """(prefill pass, decode step) seconds of one decoder layer at `bits` bits on `device`: the roofline.

    This one function prices every layer the planner places: a whole replica, a pipeline stage
    (solver.partition), a hybrid replica's GPU- and CPU-computed layers (solver.hybrid_costs).
    Prefill is compute-bound: the linear layers (with the dequantisation overhead) plus causal
    attention. A decode step takes max(bytes read / bandwidth, linear-layer FLOPs / peak); it
    reads the layer's weights (an MoE layer only its routed experts, until the batch covers
    them all) and the batch's KV cache.
    """
    active, dq = model.layer_active_params(), DEQUANT_OVERHEAD[bits]
    tokens = step.prefill_sequences * step.prompt_tokens
    prefill = (2 * active * tokens * dq + 2 * model.hidden * step.prompt_tokens * tokens) / device.effective_flops()
    experts_read = min(1.0, active / model.layer_params() * step.decode_batch) if model.experts > 1 else 1.0
    read = model.layer_weight_bytes(bits) * experts_read + step.decode_batch * step.context_tokens * model.layer_kv_bytes_per_token()
    flops = 2 * step.decode_batch * active * dq  # the linear layers; decode attention is a per-sequence GEMV, its KV read above
    return prefill, max(read / device.effective_bandwidth(), flops / device.effective_flops())


def head_seconds(model: ModelShape, device: Device, step: StepShape) -> tuple[float, float]:
    """(prefill pass, decode step) seconds of the LM head (16 bits, the last position of each sequence only)."""
    params = model.vocab * model.hidden
    prefill = 2 * params * step.prefill_sequences / device.effective_flops()
    decode = max(params * 2 / device.effective_bandwidth(), 2 * params * step.decode_batch / device.effective_flops())
    return prefill, decode


def replica_seconds(model: ModelShape, device: Device, bits: tuple[int, ...], step: StepShape) -> tuple[float, float]:
    """(prefill pass, decode step) seconds of a whole replica: every layer at its bits, then the LM head."""
    prefill, decode = head_seconds(model, device, step)
    for b, n in Counter(bits).items():
        layer_prefill, layer_decode = layer_seconds(model, device, b, step)
        prefill, decode = prefill + n * layer_prefill, decode + n * layer_decode
    return prefill, decode


def max_batch(model: ModelShape, device: Device, bits: tuple[int, ...], input_tokens: float, output_tokens: float) -> int:
    """Largest batch (sequences, ≤ MAX_BATCH) whose weights, KV cache and workspace fit; 0 if none."""
    free = device.usable_bytes() - weight_bytes(model, bits)
    per_seq = (input_tokens + output_tokens) * model.kv_bytes_per_token()
    batch = min(MAX_BATCH, int(free // per_seq)) if free > 0 else 0
    while batch > 0 and batch * per_seq + workspace_bytes(model, min(batch * input_tokens, PREFILL_CHUNK_TOKENS), batch) > free:
        batch -= 1
    return batch


def prefill_seconds(model: ModelShape, device: Device, bits: tuple[int, ...], batch: int, input_tokens: float) -> float:
    """Time (s) to prefill `batch` prompts of `input_tokens` (compute-bound; causal attention included)."""
    return replica_seconds(model, device, bits, StepShape(batch, input_tokens, 0, 0))[0]


def decode_step_seconds(model: ModelShape, device: Device, bits: tuple[int, ...], batch: int, context_tokens: float) -> float:
    """Time (s) of one decode step for `batch` sequences at `context_tokens` each (each layer: max of memory and compute roof)."""
    return replica_seconds(model, device, bits, StepShape(0, 0, batch, context_tokens))[1]


@dataclass(frozen=True)
class Throughput:
    """Sustained rate of one replica on one workload class at `batch` concurrent sequences."""

    batch: int
    requests_per_s: float
    output_tokens_per_s: float
    seconds_per_batch: float


def class_throughput(model: ModelShape, device: Device, bits: tuple[int, ...], input_tokens: float, output_tokens: float,
                     batch_cap: int | None = None) -> Throughput:
    """Throughput on requests of these mean lengths at the largest batch that fits, at most `batch_cap` sequences (0 if
    none fits).

    A batch prefills, then decodes `output_tokens` steps at the mean context (input + output/2).
    """
    batch = max_batch(model, device, bits, input_tokens, output_tokens)
    if batch_cap is not None:
        batch = min(batch, batch_cap)
    if batch == 0:
        return Throughput(0, 0.0, 0.0, math.inf)
    steps = max(1, math.ceil(output_tokens))
    prefill, decode = replica_seconds(model, device, bits, StepShape(batch, input_tokens, batch, input_tokens + output_tokens / 2))
    seconds = prefill + steps * decode
    return Throughput(batch, batch / seconds, batch * output_tokens / seconds, seconds)
