"""What this CPU is good at, measured rather than assumed: the CPUs a worker is given, and its fast matmul dtype.

Two kinds of x86 machine run costserve's CPU workers, and the fast path differs between them
(2 threads, 576→1536 Linear, 59 rows — one decode batch; `python -m bench.cpu_paths`):

| path                                  | AMX / AVX512-BF16 | AVX2 only |
|---------------------------------------|-------------------|-----------|
| fp32 `nn.Linear`                      | 0.71 ms           | 0.70 ms   |
| int8 → bf16, bf16 matmul              | 0.54 ms           | 7.0 ms    |
| int8 → fp32, fp32 matmul              | 0.97 ms           | 0.94 ms   |
| `_weight_int8pack_mm` (int8 kernel)   | 1.15 ms           | 1.96 ms   |

Without bf16 matrix units, bf16 matmuls are emulated and run ~10× slower than fp32, so a
quantized layer must widen its weights to fp32 there, and to bf16 where bf16 is native. The
choice is measured once per process (`matmul_dtype`), not read from CPU flags: an oversubscribed
or restricted CPU (`ONEDNN_MAX_CPU_ISA`) behaves as what it runs like.
"""

from __future__ import annotations

import functools
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch  # imported where used: the driver asks available_cpus() without loading torch

# bf16 must beat fp32 by this factor on the probe to be chosen (it wins by 1.3-5x where native
# and loses by ~10x where emulated: the margin only keeps timing noise from flipping a tie).
BF16_MARGIN = 0.8
PROBE_ROWS, PROBE_DIM = 64, 1024
MATMUL_ENV = "COSTSERVE_CPU_MATMUL"  # "bf16" or "fp32": skip the probe (tests, benchmarks)


def prefer_passive_omp() -> None:
    """Make OpenMP threads sleep, not spin, between parallel regions, in this process and the ones it starts.

    Call before torch is imported (libgomp reads OMP_WAIT_POLICY when it loads); a value already
    set wins. Measured (`python -m bench.engine --variants dc --prompts 64` beside a 2-thread
    matmul loop on a 2-CPU machine): int8 5.2 tokens/s with spinning threads, 75.1 passive
    (fp32 43.4 and 59.5); on a quiet machine it was not slower (int8 107 -> 152, fp32 74 -> 104 tokens/s,
    runs 40 minutes apart on a shared machine).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup v2 CPU quota (`cpu.max`)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota: the affinity mask is the limit
    return max(1, count)


def _best_seconds(
    candidates: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]], rounds: int = 7
) -> dict[torch.dtype, float]:
    """Best time (s) of each dtype's matmul over `rounds` interleaved rounds, after warm-ups (oneDNN builds kernels on first use).

    Interleaving keeps a burst of load on the machine from landing on one dtype only; the best
    of several rounds is what the CPU can do, not what a neighbour let it do once.
    """
    for a, b in candidates.values():
        for _ in range(3):
            a @ b
    best = {dtype: float("inf") for dtype in candidates}
    for _ in range(rounds):
        for dtype, (a, b) in candidates.items():
            t0 = time.perf_counter()
            a @ b
            best[dtype] = min(best[dtype], time.perf_counter() - t0)
    return best


@functools.cache
def matmul_dtype() -> torch.dtype:
    """The dtype quantized layers widen their weights to for a many-row CPU matmul: bf16 where it is native, else fp32.

    Measured once per process: a PROBE_ROWS × PROBE_DIM by PROBE_DIM × PROBE_DIM matmul in each
    dtype (best of 7 interleaved rounds, after warm-ups; about 20 ms); $COSTSERVE_CPU_MATMUL (bf16 or fp32) overrides.
    """
    import torch

    forced = os.environ.get(MATMUL_ENV)
    if forced in ("bf16", "fp32"):
        return torch.bfloat16 if forced == "bf16" else torch.float32
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(PROBE_ROWS, PROBE_DIM, generator=gen), torch.randn(PROBE_DIM, PROBE_DIM, generator=gen)
    seconds = _best_seconds({torch.float32: (x, w), torch.bfloat16: (x.to(torch.bfloat16), w.to(torch.bfloat16))})
    return torch.bfloat16 if seconds[torch.bfloat16] < BF16_MARGIN * seconds[torch.float32] else torch.float32


def widen_dtype(device: str) -> torch.dtype:
    """The dtype quantized weights (and the KV cache of a quantized replica) take on `device` ("cpu", "cuda", "cuda:1"):
    bf16 on a GPU, this CPU's `matmul_dtype()` on the CPU."""
    import torch

    return matmul_dtype() if device == "cpu" else torch.bfloat16
