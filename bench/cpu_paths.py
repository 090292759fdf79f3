"""Time each CPU matmul path a quantized layer can take, against fp32 `nn.Linear`, at decode- and prefill-sized rows.

    python -m bench.cpu_paths [--threads 2] [--rows 1,8,16,59,128,256,1024]

Shapes are SmolLM2's MLP (576→1536 and 1536→576). Prints ms per call (best of 20 after a
warm-up), the ratio to fp32 in the same run, and which path costserve's layers take here
(`workers.quantize.kernel_path`, with the dtype `workers.cpu.matmul_dtype` measured). To see an
AVX2-only CPU on a newer one: `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -m bench.cpu_paths`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

SHAPES = ((576, 1536), (1536, 576))


def best_ms(fn: Callable[[], object], repeats: int = 20) -> float:
    """Best wall time of `repeats` calls (ms), after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def paths(in_f: int, out_f: int, rows: int) -> dict[str, float]:
    """ms per call of each path for one shape and row count."""
    import torch
    from torch import nn

    from workers.cpu import matmul_dtype
    from workers.int4_unpack import unpack_int4
    from workers.quantize import Int4Linear, Int8Linear

    widened = matmul_dtype()

    torch.manual_seed(0)
    linear = nn.Linear(in_f, out_f, bias=False)
    q8, q4 = Int8Linear(linear), Int4Linear(linear)
    x = torch.randn(rows, in_f)
    xb = x.to(torch.bfloat16)
    return {
        "fp32 nn.Linear": best_ms(lambda: linear(x)),
        "int8 kernel": best_ms(lambda: torch._weight_int8pack_mm(xb, q8.weight, q8.scales)),
        "int8 widen to bf16": best_ms(lambda: (xb @ q8.weight.to(torch.bfloat16).t()) * q8.scales),
        "int8 widen to fp32": best_ms(lambda: (x @ q8.weight.float().t()) * q8.scales.float()),
        "int4 kernel": best_ms(lambda: torch._weight_int4pack_mm_for_cpu(xb, q4.weight, q4.group_size, q4.scales_and_zeros)),
        "int4 unpack + matmul": best_ms(lambda: [x.to(widened) @ w for w in unpack_int4(q4.weight, q4.scales_and_zeros, q4.group_size, widened)]),
        "costserve int8 layer": best_ms(lambda: q8(x)),
        "costserve int4 layer": best_ms(lambda: q4(x)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", default="1,8,16,59,128,256,1024")
    a = p.parse_args()

    import pandas as pd
    import torch

    from workers.cpu import matmul_dtype
    from workers.quantize import kernel_path

    torch.set_num_threads(a.threads)
    rows = []
    for in_f, out_f in SHAPES:
        for n in (int(r) for r in a.rows.split(",")):
            ms = paths(in_f, out_f, n)
            base = ms["fp32 nn.Linear"]
            row = {"shape": f"{in_f}->{out_f}", "rows": n, **{k: round(v, 3) for k, v in ms.items()}}
            row["int8 layer vs fp32"] = round(base / ms["costserve int8 layer"], 2)
            row["int8 path"] = kernel_path(8, n)
            row["int4 layer vs fp32"] = round(base / ms["costserve int4 layer"], 2)
            row["int4 path"] = kernel_path(4, n, out_features=out_f)
            rows.append(row)
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {a.threads} threads, load average "
          f"{os.getloadavg()[0]:.2f}; quantized layers widen to {matmul_dtype()} here (workers/cpu.py)")


if __name__ == "__main__":
    main()
