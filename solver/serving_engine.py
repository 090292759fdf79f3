"""The serving engines a whole replica's throughput is predicted for: how each sizes its KV cache and batch, and its speed.

The roofline's efficiency constants (solver.costmodel) are fitted to TensorRT-LLM's published offline
throughput (`catalog/data/measured_throughput.csv`, `python -m bench.fidelity`), so TensorRT-LLM has
speed 1 and another engine's speed is its published throughput relative to TensorRT-LLM.
Units: bytes, sequences.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServingEngine:
    """How one engine fills device memory and batches sequences.

    kv_fraction: the share of memory the engine gives the KV cache. kv_of_free: True when that share
    is of the memory left after weights and runtime (TensorRT-LLM's kv_cache_free_gpu_mem_fraction),
    False when it is of the whole device, weights, workspace and runtime then taken out of it
    (vLLM's gpu_memory_utilization). max_batch: concurrent sequences at most. speed: throughput
    relative to the fitted roofline (1 = TensorRT-LLM).
    """

    name: str
    kv_fraction: float
    kv_of_free: bool
    max_batch: int
    speed: float

    def kv_budget_bytes(
        self, memory_bytes: float, runtime_bytes: float, weight_bytes: float, workspace_bytes: float
    ) -> float:
        """Bytes of KV cache this engine allocates on `memory_bytes` of device memory (≤ 0: nothing fits)."""
        if self.kv_of_free:
            return (memory_bytes - runtime_bytes - weight_bytes - workspace_bytes) * self.kv_fraction
        return memory_bytes * self.kv_fraction - runtime_bytes - weight_bytes - workspace_bytes


# trtllm-bench (the perf-overview tables): KV cache 0.95 of the memory free after the weights, batch at most
# 4096 (tensorrt_llm/bench/build/tuning.py, calc_engine_setting and finetune_setting).
TENSORRT_LLM = ServingEngine("tensorrt-llm", kv_fraction=0.95, kv_of_free=True, max_batch=4096, speed=1.0)
# TensorRT-LLM delivers 13% more throughput than vLLM on an H100 80GB serving Llama 3.3 70B in FP8
# ("vLLM vs TensorRT-LLM vs SGLang: H100 Benchmarks 2026", cloudai.pt). One published point, not a
# fit; runinfra.ai (June 2026, vLLM 0.23 vs TensorRT-LLM 1.2.1, Llama-3.1-8B on H100) found vLLM
# ahead at saturation, so the gap is small and moves between releases.
VLLM_VS_TENSORRT_LLM = 1 / 1.13
# vLLM as costserve runs it: gpu_memory_utilization 0.9 (vLLM's default), max_num_seqs 256.
VLLM = ServingEngine("vllm", kv_fraction=0.9, kv_of_free=False, max_batch=256, speed=VLLM_VS_TENSORRT_LLM)
