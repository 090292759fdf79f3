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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

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
    layers = sum(model.layer_params() * STORED_BITS[b] / 8 for b in bits)
    return layers + model.embedding_params() * 2


def _dequant_factor(bits: tuple[int, ...]) -> float:
    return sum(DEQUANT_OVERHEAD[b] for b in bits) / len(bits)


def workspace_bytes(model: ModelShape, batch: int, input_tokens: float) -> float:
    """Activation workspace: one prefill chunk's hidden/MLP activations plus the batch's logits."""
    tokens = min(batch * input_tokens, PREFILL_CHUNK_TOKENS)
    return tokens * (4 * model.hidden + 2 * model.intermediate) * 2 + batch * model.vocab * 4


def max_batch(model: ModelShape, device: Device, bits: tuple[int, ...], input_tokens: float, output_tokens: float) -> int:
    """Largest batch (sequences, ≤ MAX_BATCH) whose weights, KV cache and workspace fit; 0 if none."""
    free = device.usable_bytes() - weight_bytes(model, bits)
    per_seq = (input_tokens + output_tokens) * model.kv_bytes_per_token()
    batch = min(MAX_BATCH, int(free // per_seq)) if free > 0 else 0
    while batch > 0 and batch * per_seq + workspace_bytes(model, batch, input_tokens) > free:
        batch -= 1
    return batch


def prefill_seconds(model: ModelShape, device: Device, bits: tuple[int, ...], batch: int, input_tokens: float) -> float:
    """Time to prefill `batch` prompts of `input_tokens` (compute-bound; causal attention included)."""
    linear = 2 * model.layers * model.layer_active_params() * input_tokens * batch
    attention = 2 * model.layers * model.hidden * input_tokens**2 * batch
    head = 2 * model.vocab * model.hidden * batch  # logits of the last position only
    return (linear * _dequant_factor(bits) + attention + head) / device.effective_flops()


def decode_step_seconds(model: ModelShape, device: Device, bits: tuple[int, ...], batch: int, context_tokens: float) -> float:
    """One decode step for `batch` sequences at `context_tokens` each: max(memory roof, compute roof)."""
    active_share = model.layer_active_params() / model.layer_params()  # MoE reads only routed experts...
    experts_read = min(1.0, active_share * batch) if model.experts > 1 else 1.0  # ...until the batch covers all
    layer_bytes = weight_bytes(model, bits) - model.embedding_params() * 2
    read = layer_bytes * experts_read + model.vocab * model.hidden * 2 + batch * context_tokens * model.kv_bytes_per_token()
    memory_time = read / device.effective_bandwidth()
    flops = 2 * batch * (model.layers * model.layer_active_params() * _dequant_factor(bits) + model.vocab * model.hidden)
    flops += 4 * batch * model.layers * model.hidden * context_tokens  # attention over the context
    return max(memory_time, flops / device.effective_flops())


@dataclass(frozen=True)
class Throughput:
    """Sustained rate of one replica on one workload class at `batch` concurrent sequences."""

    batch: int
    requests_per_s: float
    output_tokens_per_s: float
    seconds_per_batch: float


def class_throughput(model: ModelShape, device: Device, bits: tuple[int, ...], input_tokens: float, output_tokens: float) -> Throughput:
    """Throughput on requests of these mean lengths at the largest batch that fits (0 if none fits).

    A batch prefills, then decodes `output_tokens` steps at the mean context (input + output/2).
    """
    batch = max_batch(model, device, bits, input_tokens, output_tokens)
    if batch == 0:
        return Throughput(0, 0.0, 0.0, math.inf)
    steps = max(1, math.ceil(output_tokens))
    seconds = prefill_seconds(model, device, bits, batch, input_tokens) + steps * decode_step_seconds(
        model, device, bits, batch, input_tokens + output_tokens / 2
    )
    return Throughput(batch, batch / seconds, batch * output_tokens / seconds, seconds)
