"""Roofline cost model: memory, prefill and decode time, throughput of a replica per workload class.

A replica here is `tp` devices of one kind working as one (tensor parallel), holding every
decoder layer at its bit-width. Prefill is compute-bound (FLOPs / effective peak); a decode
step reads every weight and the batch's KV cache once (bytes / effective bandwidth) unless
the batch is large enough to hit the compute roof; tensor-parallel replicas add two
all-reduces of the activations per layer. Units: seconds, bytes, GiB, tokens.
The efficiency constants below are fitted to published offline throughput
(`catalog/data/measured_throughput.csv`: TensorRT-LLM on H200, H100, L40S and A100, FP8 and
FP16, TP 1-8; fitted on its dense models, the Mixtral points held out) by
`python -m bench.fidelity --fit`; measured profiles (`costserve profile`)
and run calibration replace them where they exist.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from solver.model_shape import KV_BYTES_PER_VALUE, STORED_BITS, ModelShape
from solver.serving_engine import VLLM, ServingEngine

__all__ = ["KV_BYTES_PER_VALUE", "STORED_BITS", "ModelShape"]

GIB = 2**30
# Achieved fraction of peak tensor FLOPs in large GEMMs (prefill, compute-bound decode), FP8 and
# 16-bit alike. Fitted (bench.fidelity; the prefill-heavy points, 2048/128 and 5000/500, pin it):
# 0.58, inside the 40-60% MFU vLLM and SGLang report for prefill on A100/H100.
PREFILL_EFFICIENCY = 0.58
# Achieved fraction of peak memory bandwidth in decode weight and KV reads. Fitted (bench.fidelity).
DECODE_BANDWIDTH_EFFICIENCY = 0.68
# Share of device memory the engine may use (vLLM's gpu_memory_utilization default).
MEMORY_UTILIZATION = 0.9
# CUDA context, NCCL and allocator, per device (GiB). Fitted on the tight fits of the reference
# (70B FP8 on one H100: 70 GiB of weights on 80 GiB).
RUNTIME_OVERHEAD_GIB = {"gpu": 0.8, "cpu": 4.0}
# One all-reduce's fixed cost (s). Fitted: 110 us, well above NCCL's 10-20 us launch latency on
# NVLink, because it also carries the wait for the slowest device at every layer's synchronisation.
ALLREDUCE_LATENCY_S = 110e-6
# Achieved fraction of the device-to-device link's bandwidth (per direction) in a ring all-reduce. Fitted.
LINK_EFFICIENCY = 0.5
# Extra compute for dequantising weights inside the matmul (weight-only kernels; fp32 and bf16 layers need none).
DEQUANT_OVERHEAD = {32: 1.0, 16: 1.0, 8: 1.1, 4: 1.2, 3: 1.3}  # 32 and 16: nothing to dequantise
MAX_BATCH = VLLM.max_batch  # concurrent sequences per replica, as the engine is told (vLLM max_num_seqs)
PREFILL_CHUNK_TOKENS = 8192  # activation workspace is sized for this many tokens at once
ACTIVATION_BYTES = 2  # 16-bit activations cross the tensor-parallel links


@dataclass(frozen=True)
class Numerics:
    """How a replica computes, as vLLM is told: `activations` "bf16" (16-bit, or weight-only quantized
    layers widened to it) or "fp8" (FP8 weights and activations on FP8 tensor cores, vLLM
    quantization="fp8"); `kv_cache` "auto" (16-bit) or "fp8" (vLLM kv_cache_dtype="fp8")."""

    activations: str = "bf16"
    kv_cache: str = "auto"

    def kv_value_bytes(self) -> int:
        """Bytes of one cached K or V value."""
        return 1 if self.kv_cache == "fp8" else KV_BYTES_PER_VALUE


BF16 = Numerics()
FP8 = Numerics("fp8", "fp8")


@dataclass(frozen=True)
class Device:
    """The hardware of one replica: `count` devices of one kind acting as one (tensor parallel).

    memory_gib, tflops (dense 16-bit), fp8_tflops (dense FP8; 0: no FP8 tensor cores) and
    bandwidth_gbps are per device; link_gbps is the device-to-device bandwidth per direction (GB/s);
    `kind` is "gpu" or "cpu".
    """

    name: str
    kind: str
    memory_gib: float
    tflops: float
    bandwidth_gbps: float
    count: int = 1
    interconnect: str | None = None
    fp8_tflops: float = 0.0
    link_gbps: float = 0.0

    @classmethod
    def from_catalog(cls, gpu_row: Any, count: int = 1, vcpus: int = 0, host_memory_gib: float = 0.0) -> Device:
        """From a gpus.csv row; the `cpu` row (per vCPU) is scaled by the offering's vCPUs and RAM."""
        if bool(gpu_row["per_vcpu"]):
            return cls(
                gpu_row["gpu"],
                "cpu",
                host_memory_gib,
                gpu_row["bf16_tflops"] * vcpus,
                gpu_row["mem_bandwidth_gbps"] * vcpus,
                1,
                None,
            )
        interconnect = gpu_row["interconnect"] if isinstance(gpu_row["interconnect"], str) else None
        # NVLink figures in datasheets count both directions; PCIe figures are per direction
        link = float(gpu_row["nvlink_gbps"]) / 2 if interconnect == "NVLink" else float(gpu_row["pcie_gbps"])
        return cls(
            gpu_row["gpu"],
            "gpu",
            float(gpu_row["memory_gib"]),
            float(gpu_row["bf16_tflops"]),
            float(gpu_row["mem_bandwidth_gbps"]),
            count,
            interconnect,
            float(gpu_row.get("fp8_tflops", 0.0)),
            link,
        )

    def memory_bytes(self) -> float:
        """Device memory, all devices together (bytes)."""
        return self.memory_gib * self.count * GIB

    def runtime_bytes(self) -> float:
        """Memory the runtime holds before any weight (CUDA context, NCCL; the OS on a CPU host), all devices (bytes)."""
        return RUNTIME_OVERHEAD_GIB[self.kind] * self.count * GIB

    def usable_bytes(self) -> float:
        """Memory the engine may fill, all devices together (bytes)."""
        return max(0.0, self.memory_bytes() * MEMORY_UTILIZATION - self.runtime_bytes())

    def effective_flops(self, numerics: Numerics = BF16) -> float:
        """Sustained FLOP/s in large GEMMs across the replica's devices (the split is even; its communication is
        `allreduce_seconds`)."""
        peak = self.fp8_tflops if numerics.activations == "fp8" else self.tflops
        if peak <= 0:
            raise ValueError(f"{self.name} has no FP8 tensor cores")
        return peak * 1e12 * PREFILL_EFFICIENCY * self.count

    def effective_bandwidth(self) -> float:
        """Sustained bytes/s of weight and KV reads across the replica's devices."""
        return self.bandwidth_gbps * 1e9 * DECODE_BANDWIDTH_EFFICIENCY * self.count

    def allreduce_seconds(self, nbytes: float) -> float:
        """Seconds of one ring all-reduce of `nbytes` bytes across the replica's devices (0 on one device)."""
        if self.count == 1:
            return 0.0
        if self.link_gbps <= 0:
            raise ValueError(f"{self.name}: {self.count} devices need a link bandwidth")
        moved = 2 * (self.count - 1) / self.count * nbytes
        return ALLREDUCE_LATENCY_S + moved / (self.link_gbps * 1e9 * LINK_EFFICIENCY)


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


def layer_seconds(
    model: ModelShape, device: Device, bits: int, step: StepShape, numerics: Numerics = BF16
) -> tuple[float, float]:
    """(prefill pass, decode step) seconds of one decoder layer at `bits` bits on `device`: the roofline.

    This one function prices every layer the planner places: a whole replica, a pipeline stage
    (solver.partition), a hybrid replica's GPU- and CPU-computed layers (solver.hybrid_costs).
    Prefill is compute-bound: the linear layers (with the dequantisation overhead of weight-only
    layers; none for FP8, whose tensor cores take the weights as stored) plus causal attention. A
    decode step takes max(bytes read / bandwidth, linear-layer FLOPs / peak); it reads the layer's
    weights (an MoE layer only its routed experts, until the batch covers them all) and the batch's
    KV cache. A tensor-parallel replica adds two all-reduces of the layer's activations (after
    attention and after the MLP) to both.
    """
    active = model.layer_active_params()
    dq = 1.0 if numerics.activations == "fp8" else DEQUANT_OVERHEAD[bits]
    flops_per_s = device.effective_flops(numerics)
    tokens = step.prefill_sequences * step.prompt_tokens
    prefill = (2 * active * tokens * dq + 2 * model.hidden * step.prompt_tokens * tokens) / flops_per_s
    experts_read = min(1.0, active / model.layer_params() * step.decode_batch) if model.experts > 1 else 1.0
    kv = step.decode_batch * step.context_tokens * model.layer_kv_bytes_per_token(numerics.kv_value_bytes())
    read = model.layer_weight_bytes(bits) * experts_read + kv
    flops = (
        2 * step.decode_batch * active * dq
    )  # the linear layers; decode attention is a per-sequence GEMV, its KV read above
    decode = max(read / device.effective_bandwidth(), flops / flops_per_s)
    if device.count > 1:
        prefill += 2 * device.allreduce_seconds(tokens * model.hidden * ACTIVATION_BYTES)
        decode += 2 * device.allreduce_seconds(step.decode_batch * model.hidden * ACTIVATION_BYTES)
    return prefill, decode


def head_seconds(model: ModelShape, device: Device, step: StepShape) -> tuple[float, float]:
    """(prefill pass, decode step) seconds of the LM head (16 bits, the last position of each sequence only)."""
    params = model.vocab * model.hidden
    prefill = 2 * params * step.prefill_sequences / device.effective_flops()
    decode = max(params * 2 / device.effective_bandwidth(), 2 * params * step.decode_batch / device.effective_flops())
    return prefill, decode


def replica_seconds(
    model: ModelShape, device: Device, bits: tuple[int, ...], step: StepShape, numerics: Numerics = BF16
) -> tuple[float, float]:
    """(prefill pass, decode step) seconds of a whole replica: every layer at its bits, then the LM head."""
    prefill, decode = head_seconds(model, device, step)
    for b, n in Counter(bits).items():
        layer_prefill, layer_decode = layer_seconds(model, device, b, step, numerics)
        prefill, decode = prefill + n * layer_prefill, decode + n * layer_decode
    return prefill, decode


def max_batch(
    model: ModelShape,
    device: Device,
    bits: tuple[int, ...],
    input_tokens: float,
    output_tokens: float,
    numerics: Numerics = BF16,
    engine: ServingEngine = VLLM,
) -> int:
    """Largest batch (sequences, ≤ the engine's max_batch) whose weights, KV cache and workspace fit as `engine`
    allocates memory; 0 if none."""
    weights = weight_bytes(model, bits)
    per_seq = (input_tokens + output_tokens) * model.kv_bytes_per_token(numerics.kv_value_bytes())

    def kv_budget(batch: int) -> float:
        workspace = workspace_bytes(model, min(batch * input_tokens, PREFILL_CHUNK_TOKENS), batch)
        return engine.kv_budget_bytes(device.memory_bytes(), device.runtime_bytes(), weights, workspace)

    first = kv_budget(1)
    batch = min(engine.max_batch, int(first // per_seq)) if first > 0 else 0
    while batch > 0 and batch * per_seq > kv_budget(batch):
        batch -= 1
    return batch


def prefill_seconds(model: ModelShape, device: Device, bits: tuple[int, ...], batch: int, input_tokens: float) -> float:
    """Time (s) to prefill `batch` prompts of `input_tokens` (compute-bound; causal attention included)."""
    return replica_seconds(model, device, bits, StepShape(batch, input_tokens, 0, 0))[0]


def decode_step_seconds(
    model: ModelShape, device: Device, bits: tuple[int, ...], batch: int, context_tokens: float
) -> float:
    """Time (s) of one decode step for `batch` sequences at `context_tokens` each (each layer: max of memory and compute roof)."""
    return replica_seconds(model, device, bits, StepShape(0, 0, batch, context_tokens))[1]


@dataclass(frozen=True)
class Throughput:
    """Sustained rate of one replica on one workload class at `batch` concurrent sequences."""

    batch: int
    requests_per_s: float
    output_tokens_per_s: float
    seconds_per_batch: float


def class_throughput(
    model: ModelShape,
    device: Device,
    bits: tuple[int, ...],
    input_tokens: float,
    output_tokens: float,
    batch_cap: int | None = None,
    numerics: Numerics = BF16,
    engine: ServingEngine = VLLM,
) -> Throughput:
    """Throughput on requests of these mean lengths at the largest batch that fits, at most `batch_cap` sequences (0 if
    none fits), served by `engine` (its speed applies on GPUs).

    A batch prefills, then decodes `output_tokens` steps at the mean context (input + output/2).
    """
    batch = max_batch(model, device, bits, input_tokens, output_tokens, numerics, engine)
    if batch_cap is not None:
        batch = min(batch, batch_cap)
    if batch == 0:
        return Throughput(0, 0.0, 0.0, math.inf)
    steps = max(1, math.ceil(output_tokens))
    step = StepShape(batch, input_tokens, batch, input_tokens + output_tokens / 2)
    prefill, decode = replica_seconds(model, device, bits, step, numerics)
    seconds = (prefill + steps * decode) / (engine.speed if device.kind == "gpu" else 1.0)
    return Throughput(batch, batch / seconds, batch * output_tokens / seconds, seconds)
