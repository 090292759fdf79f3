"""What a vLLM replica's worker passes to `vllm.LLM`, field for field: part of the Plan contract (solver/plan.py).

The planner fills these from the configuration it costed (solver/planner.py `replica_of`); the vLLM worker
(workers/vllm_engine.py) calls `vllm.LLM(model=<weights>, **settings.llm_kwargs())` and nothing else, so what
the plan predicts is what runs. Pydantic only: workers/ reads it through solver.plan.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# vLLM's own names for these values (vllm.config: ModelDType, QuantizationMethods, CacheDType).
VllmDtype = Literal["auto", "bfloat16", "float16", "float32"]
VllmQuantization = Literal["fp8"]  # pre-quantized checkpoints carry their own method: quantization stays None
VllmKvCacheDtype = Literal["auto", "fp8"]
MIN_MODEL_LEN = 2048  # tokens: a context window below this saves almost no memory and refuses ordinary prompts


class VllmSettings(BaseModel):
    """`vllm.LLM` keyword arguments of one replica (besides `model`, the weights the worker has).

    quantization None runs the weights as the checkpoint stores them (16-bit, or a pre-quantized `checkpoint`);
    "fp8" quantizes 16-bit weights to FP8 when loading (dynamic activation scales, GPUs with FP8 tensor cores). kv_cache_dtype "fp8" halves the
    KV cache. max_num_seqs is the batch (sequences) the planner costed; max_model_len the longest job (tokens)
    with a margin; gpu_memory_utilization the share of each GPU vLLM may fill; cpu_offload_gb weights kept in
    host memory per GPU (GiB).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dtype: VllmDtype = "bfloat16"
    quantization: VllmQuantization | None = None
    kv_cache_dtype: VllmKvCacheDtype = "auto"
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    max_num_seqs: int = Field(ge=1)
    max_model_len: int = Field(ge=16)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    cpu_offload_gb: float = Field(0.0, ge=0)
    enforce_eager: bool = Field(False, description="no CUDA graphs or compilation (tests; faster start, slower steps)")
    checkpoint: str | None = Field(
        None,
        description="a pre-quantized checkpoint (Hugging Face id, catalog/data/"
        "quantized_checkpoints.csv) the node serves as the model's weights; vLLM reads its "
        "method from its config. Not an argument: it is what `model` points at",
    )
    checkpoint_bits: int | None = Field(None, description="the checkpoint's weight bits (8 or 4)")

    @model_validator(mode="after")
    def _checkpoint(self) -> VllmSettings:
        if (self.checkpoint is None) != (self.checkpoint_bits is None):
            raise ValueError("checkpoint and checkpoint_bits come together")
        if self.checkpoint is not None and self.quantization is not None:
            raise ValueError("a pre-quantized checkpoint carries its own method: quantization must be None")
        return self

    def llm_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `vllm.LLM` besides `model`: every field but the checkpoint's, which names the weights."""
        return self.model_dump(exclude={"checkpoint", "checkpoint_bits"})

    def precision(self) -> str:
        """For people: `bf16`, `fp8, fp8 KV cache`, `int4 checkpoint`, `float32`."""
        if self.checkpoint is not None:
            weights = f"int{self.checkpoint_bits} checkpoint"
        else:
            weights = self.quantization or ("bf16" if self.dtype in ("auto", "bfloat16") else self.dtype)
        return weights + (", fp8 KV cache" if self.kv_cache_dtype == "fp8" else "")


def model_len_for(longest_job_tokens: int, model_context: int) -> int:
    """max_model_len (tokens) for a batch whose longest job needs `longest_job_tokens` (prompt estimate + max_tokens):
    1.5 × that, for prompts the chars/4 estimate undercounts, rounded up to a power of two, at least MIN_MODEL_LEN
    and at most the model's context window (0: not known)."""
    wanted = max(MIN_MODEL_LEN, 2 ** math.ceil(math.log2(max(1.0, 1.5 * longest_job_tokens))))
    return int(min(wanted, model_context)) if model_context > 0 else wanted
