"""Row schemas of the catalog CSV files (pydantic), one class per file.

Units are in the column names: GiB, TFLOPS, TOPS, GB/s, $/h.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Cloud = Literal["aws", "gcp", "azure", "lambda"]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1, description="where the figures come from")
    as_of: dt.date = Field(description="date the figures were taken")


class GpuRow(_Row):
    """A device kind. For the `cpu` host device (per_vcpu=true) compute and bandwidth are per vCPU."""

    gpu: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    sky_name: str | None = Field(None, description="SkyPilot's accelerator name")
    vendor: str
    memory_gib: float = Field(ge=0, description="device memory, GiB (0: host memory of the offering)")
    bf16_tflops: float = Field(gt=0, description="dense bf16/fp16 tensor throughput, TFLOPS")
    int8_tops: float = Field(gt=0, description="dense int8 throughput, TOPS")
    fp8_tflops: float = Field(0.0, ge=0, description="dense FP8 tensor throughput, TFLOPS (0: no FP8 tensor cores)")
    mem_bandwidth_gbps: float = Field(gt=0, description="memory bandwidth, GB/s")
    interconnect: Literal["NVLink", "PCIe"] | None = None
    nvlink_gbps: float = Field(
        ge=0, description="GPU-GPU NVLink bandwidth, both directions together as datasheets state it, GB/s (0: none)"
    )
    pcie_gbps: float = Field(ge=0, description="host link bandwidth per direction, GB/s")
    per_vcpu: bool = False

    @model_validator(mode="after")
    def _memory_for_gpus(self) -> GpuRow:
        if not self.per_vcpu and self.memory_gib <= 0:
            raise ValueError("memory_gib: a GPU needs memory_gib > 0")
        return self


class OfferingRow(_Row):
    """A purchasable instance type in one region of one cloud."""

    cloud: Cloud
    region: str = Field(min_length=1)
    instance_type: str = Field(min_length=1)
    gpu: str = Field(min_length=1, description="a `gpu` of gpus.csv; `cpu` for CPU-only instances")
    gpu_count: int = Field(ge=0)
    vcpus: int = Field(gt=0)
    host_memory_gib: float = Field(gt=0)
    price_per_hour: float = Field(gt=0, description="on-demand price, $/h")
    spot_price_per_hour: float | None = Field(None, gt=0, description="spot price, $/h (empty: no spot)")
    availability: int = Field(ge=0, description="instances that can be had at once (default; user-overridable)")
    availability_source: str | None = Field(
        None, description="where `availability` comes from (empty: the catalog file's assumption)"
    )
    spot_interruption: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="share of spot throughput lost to interruptions (empty: the cloud's default, solver/candidates.py)",
    )

    @model_validator(mode="after")
    def _gpu_count_matches(self) -> OfferingRow:
        if (self.gpu == "cpu") != (self.gpu_count == 0):
            raise ValueError("gpu_count: must be 0 exactly when gpu is cpu")
        return self


class ModelRow(_Row):
    """Architecture facts of a served model (from its config.json)."""

    model: str = Field(min_length=1)
    hf_id: str = Field(min_length=1)
    architecture: Literal["llama", "mistral", "qwen2", "mixtral"]
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    intermediate: int = Field(gt=0, description="MLP width (per expert for MoE)")
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    vocab: int = Field(gt=0)
    params_b: float = Field(gt=0, description="parameters, billions")
    context: int = Field(gt=0, description="maximum context, tokens")
    experts: int = Field(1, ge=1)
    experts_per_token: int = Field(1, ge=1)
    tied_embeddings: bool = False
    gated: bool = Field(
        False, description="the Hugging Face repository asks for an access request: downloads need a token"
    )

    @model_validator(mode="after")
    def _shapes(self) -> ModelRow:
        if self.heads % self.kv_heads:
            raise ValueError("kv_heads: must divide heads")
        if self.experts_per_token > self.experts:
            raise ValueError("experts_per_token: cannot exceed experts")
        return self


class MeasuredThroughputRow(_Row):
    """One published offline-throughput measurement: a replica of `tp` GPUs serving requests of fixed lengths."""

    gpu: str = Field(min_length=1, description="a `gpu` of gpus.csv")
    model: str = Field(min_length=1, description="a `model` of models.csv")
    precision: Literal["fp16", "fp8"] = Field(
        description="weights and activations: fp16/bf16, or FP8 on FP8 tensor cores"
    )
    kv_cache_dtype: Literal["fp16", "fp8"]
    tp: int = Field(ge=1, description="tensor-parallel GPUs in the replica")
    input_tokens: int = Field(gt=0)
    output_tokens: int = Field(gt=0)
    output_tokens_per_s: float = Field(gt=0, description="generated tokens per second, the whole replica")
    engine: Literal["tensorrt-llm", "vllm"]


class QuantizedCheckpointRow(_Row):
    """A pre-quantized checkpoint of a catalog model that vLLM loads as it is (the method is in its own config)."""

    model: str = Field(min_length=1, description="a `model` of models.csv")
    bits: int = Field(ge=4, le=8, multiple_of=4, description="weight bits, 8 or 4 (activations stay 16-bit)")
    method: Literal["awq", "gptq", "compressed-tensors"]
    hf_id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="the Hugging Face repository a node downloads")
