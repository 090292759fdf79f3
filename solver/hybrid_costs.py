"""Cost model of a CPU–GPU hybrid replica (ScheInfer, arXiv 2411.15715): one GPU plus its host.

Some decoder layers stay in host memory. In each phase a host-resident layer is either
computed by the host CPU (activations cross PCIe, weights do not) or streamed: its weights
are copied over PCIe into a GPU staging buffer and computed there. Per layer and bit-width
this module gives, for one prefill pass (`prefill_mb` prompts) and one decode step (the whole
batch), the seconds each of the three resources spends: GPU compute, CPU compute, PCIe.

Overlap, as the engine (`workers/offload.py`) does it: a copy stream prefetches the next
streamed layer's weights while the current layer computes, so PCIe runs beside compute;
CPU and GPU compute of one pass are serial (each layer needs the previous layer's output).
A pass therefore takes max(PCIe, GPU + CPU) seconds. Units: seconds, bytes, GB/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from solver.costmodel import (
    GIB,
    MEMORY_UTILIZATION,
    RUNTIME_OVERHEAD_GIB,
    Device,
    ModelShape,
    StepShape,
    layer_seconds,
    workspace_bytes,
)
from solver.device_profile import CpuProfile

# Achieved fraction of nominal PCIe bandwidth for pinned host -> GPU copies (cudaMemcpyAsync
# from pinned memory typically reaches 80-90% of the link).
PCIE_EFFICIENCY = 0.8
ACTIVATION_BYTES = 4  # activations cross between devices in fp32
# Where each phase of a layer runs: (prefill, decode). "gpu" = GPU-resident; host-resident
# layers are computed on the "cpu" or "stream"ed to the GPU, chosen per phase.
PLACEMENTS: dict[str, tuple[str, str]] = {
    "gpu": ("gpu", "gpu"),
    "cpu": ("cpu", "cpu"),
    "stream-prefill": ("stream", "cpu"),
    "stream-decode": ("cpu", "stream"),
    "stream": ("stream", "stream"),
}


@dataclass(frozen=True)
class Host:
    """The host side of one GPU: its share of the instance's vCPUs and RAM, and its PCIe link.

    `cpu` is the roofline of those vCPUs (gpus.csv `cpu` row scaled); `cpu_profile`, when
    given (`costserve profile --device cpu` of this model), replaces it for layer times,
    scaled from the profiled threads to `vcpus`.
    """

    vcpus: int
    memory_gib: float
    pcie_gbps: float
    cpu: Device
    cpu_profile: CpuProfile | None = None

    def usable_bytes(self) -> float:
        """Host memory the engine may fill with layers and KV cache (bytes)."""
        return max(0.0, self.memory_gib * MEMORY_UTILIZATION - RUNTIME_OVERHEAD_GIB["cpu"]) * GIB

    def pcie_bytes_per_s(self) -> float:
        """Sustained host -> GPU copy rate (bytes/s)."""
        return self.pcie_gbps * 1e9 * PCIE_EFFICIENCY


def host_of(
    cpu_row: Any, vcpus: int, memory_gib: float, pcie_gbps: float, cpu_profile: CpuProfile | None = None
) -> Host:
    """A Host from gpus.csv's per-vCPU `cpu` row, the GPU's share of vCPUs and RAM, and its PCIe GB/s."""
    return Host(vcpus, memory_gib, pcie_gbps, Device.from_catalog(cpu_row, 1, vcpus, memory_gib), cpu_profile)


@dataclass(frozen=True)
class PhaseSeconds:
    """Seconds one layer costs each resource in one pass of a phase."""

    gpu: float = 0.0
    cpu: float = 0.0
    pcie: float = 0.0


@dataclass(frozen=True)
class LayerCosts:
    """One layer at one bit-width in one placement: per-pass seconds and where its bytes live."""

    prefill: PhaseSeconds
    decode: PhaseSeconds
    gpu_bytes: float  # resident weights and KV cache on the GPU
    host_bytes: float  # resident weights and KV cache in host memory
    staging_bytes: float  # GPU buffer for one streamed copy of its weights (0 if never streamed)


@dataclass(frozen=True)
class HybridShape:
    """The batch a hybrid replica runs: `batch` sequences, prefilled `prefill_mb` at a time."""

    batch: int
    prefill_mb: int
    input_tokens: float
    output_tokens: float

    @property
    def step(self) -> StepShape:
        """One prefill pass of `prefill_mb` prompts; one decode step of the batch at the mean context."""
        return StepShape(self.prefill_mb, self.input_tokens, self.batch, self.input_tokens + self.output_tokens / 2)


def _cpu_seconds(model: ModelShape, host: Host, bits: int, shape: HybridShape) -> tuple[float, float]:
    """(prefill pass, decode step) seconds of one layer on the host CPU: the profile when it has these bits, else the roofline."""
    if host.cpu_profile is not None and host.cpu_profile.has_bits(bits):
        return host.cpu_profile.layer_seconds(bits, shape.step, host.vcpus)
    return layer_seconds(model, host.cpu, bits, shape.step)


def layer_costs(
    model: ModelShape, gpu: Device, host: Host, shape: HybridShape, bit_widths: tuple[int, ...]
) -> dict[tuple[int, str], LayerCosts]:
    """Per (bits, placement) of PLACEMENTS: what one decoder layer costs in a hybrid replica."""
    kv_layer = shape.batch * (shape.input_tokens + shape.output_tokens) * model.layer_kv_bytes_per_token()
    pcie = host.pcie_bytes_per_s()
    # activations to the CPU and back per pass; KV computed on one side and kept on the other crosses once
    act_prefill = 2 * shape.prefill_mb * shape.input_tokens * model.hidden * ACTIVATION_BYTES / pcie
    act_decode = 2 * shape.batch * model.hidden * ACTIVATION_BYTES / pcie
    kv_prefill = shape.prefill_mb * shape.input_tokens * model.layer_kv_bytes_per_token() / pcie
    out: dict[tuple[int, str], LayerCosts] = {}
    for b in bit_widths:
        weights = model.layer_weight_bytes(b)
        gpu_pre, gpu_dec = layer_seconds(model, gpu, b, shape.step)
        cpu_pre, cpu_dec = _cpu_seconds(model, host, b, shape)
        for name, (pre_on, dec_on) in PLACEMENTS.items():
            if name == "gpu":
                out[(b, name)] = LayerCosts(
                    PhaseSeconds(gpu=gpu_pre), PhaseSeconds(gpu=gpu_dec), weights + kv_layer, 0.0, 0.0
                )
                continue
            prefill = (
                PhaseSeconds(cpu=cpu_pre, pcie=act_prefill)
                if pre_on == "cpu"
                else PhaseSeconds(gpu=gpu_pre, pcie=weights / pcie)
            )
            decode = (
                PhaseSeconds(cpu=cpu_dec, pcie=act_decode)
                if dec_on == "cpu"
                else PhaseSeconds(gpu=gpu_dec, pcie=weights / pcie)
            )
            if (pre_on == "cpu") != (dec_on == "cpu"):  # the KV cache is written on one side, read on the other
                prefill = PhaseSeconds(prefill.gpu, prefill.cpu, prefill.pcie + kv_prefill)
            kv_on_gpu = dec_on == "stream"  # the cache lives where decode reads it
            out[(b, name)] = LayerCosts(
                prefill, decode, kv_layer if kv_on_gpu else 0.0, weights + (0.0 if kv_on_gpu else kv_layer), weights
            )
    return out


def fixed_gpu_bytes(model: ModelShape, shape: HybridShape) -> float:
    """GPU bytes needed whatever the layers: embeddings, LM head, one prefill pass's activations, the batch's logits."""
    return model.embedding_params() * 2 + workspace_bytes(model, shape.prefill_mb * shape.input_tokens, shape.batch)
