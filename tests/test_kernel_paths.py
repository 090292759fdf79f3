"""Quantized layers take the kernel path `workers.quantize.kernel_path` states, for decode- and prefill-sized inputs.

Issue 21: int8 layers above 8 rows widened their weights to bf16, which an AVX2-only CPU
emulates ~10x slower than fp32, and nothing noticed. These tests record every aten op a layer
(or a whole tiny-Llama generate) dispatches, with its dtypes, under each of the two machine
kinds `workers/cpu.py` tells apart (forced with $COSTSERVE_CPU_MATMUL), and assert the path.
No timing: the op that runs is the thing under test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from engine_fixtures import JobStub
from workers import cpu
from workers.quantize import kernel_path, quantized_linear

MATMULS = {"mm", "addmm", "bmm", "matmul", "linear"}
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}


class OpRecorder(TorchDispatchMode):
    """Counts each aten op by (name, dtype of its first tensor argument)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[tuple[str, str]] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        dtype = DTYPE_NAMES.get(first.dtype, str(first.dtype)) if first is not None else "-"
        self.calls[(func.overloadpacket.__name__, dtype)] += 1
        return func(*args, **(kwargs or {}))

    def matmuls(self, dtype: str) -> int:
        """Matrix products run in `dtype`."""
        return sum(n for (op, dt), n in self.calls.items() if op in MATMULS and dt == dtype)

    def count(self, op: str) -> int:
        return sum(n for (name, _), n in self.calls.items() if name == op)


@pytest.fixture(params=["fp32", "bf16"])
def cpu_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run as an AVX2-only CPU (bf16 emulated: widen to fp32) or as one with bf16 matrix units (widen to bf16)."""
    monkeypatch.setenv(cpu.MATMUL_ENV, request.param)
    cpu.matmul_dtype.cache_clear()
    yield request.param
    cpu.matmul_dtype.cache_clear()


@pytest.mark.parametrize("rows", [1, 8, 9, 64, 512])  # decode tails, decode batches, a prefill chunk
@pytest.mark.parametrize("bits", [16, 8, 4])
def test_each_layer_takes_the_stated_path(cpu_kind: str, bits: int, rows: int) -> None:
    torch.manual_seed(0)
    layer = quantized_linear(nn.Linear(256, 384, bias=False), bits)
    x = torch.randn(rows, 256)
    with OpRecorder() as ops:
        layer(x)
    path = kernel_path(bits, rows)
    if path == "int8 kernel":
        assert ops.count("_weight_int8pack_mm") == 1 and ops.matmuls("fp32") + ops.matmuls("bf16") == 0
    elif path == "int4 kernel":
        assert ops.count("_weight_int4pack_mm_for_cpu") == 1 and ops.matmuls("fp32") + ops.matmuls("bf16") == 0
    else:
        widened = path.removeprefix("widen to ")
        assert widened == cpu_kind  # the dtype this kind of CPU is fast at
        other = "bf16" if widened == "fp32" else "fp32"
        assert ops.matmuls(widened) >= 1 and ops.matmuls(other) == 0, ops.calls
        assert ops.count("_weight_int8pack_mm") == 0


def test_the_rule_for_decode_and_prefill_sizes(cpu_kind: str) -> None:
    """int8 uses its kernel only for a decode tail (≤ 8 rows); decode batches and prefill widen to the fast dtype."""
    assert kernel_path(8, 1) == kernel_path(8, 8) == "int8 kernel"
    assert kernel_path(8, 64) == kernel_path(8, 2048) == kernel_path(16, 64) == f"widen to {cpu_kind}"
    assert kernel_path(4, 1) == kernel_path(4, 2048) == "int4 kernel"


def test_an_int8_replica_on_an_avx2_cpu_runs_no_bf16_matmul(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole generate (prefill, decode batches, decode tail) of an int8 replica: KV cache and attention in fp32 too."""
    from solver.plan import Replica
    from workers.engine import Engine

    monkeypatch.setenv(cpu.MATMUL_ENV, "fp32")
    cpu.matmul_dtype.cache_clear()
    try:
        with Engine(Replica.uniform(4, 8, decode_micro_batch=16), model=tiny_llama_dir) as engine:
            assert engine.kv_dtype == torch.float32
            jobs = [JobStub(custom_id=f"j{i}", prompt=f"prompt number {i} " * (1 + i % 5), max_tokens=4 + i % 7) for i in range(24)]
            with OpRecorder() as ops:
                engine.generate(jobs)
    finally:
        cpu.matmul_dtype.cache_clear()
    assert ops.matmuls("bf16") == 0, {k: v for k, v in ops.calls.items() if k[1] == "bf16"}
    assert ops.count("_weight_int8pack_mm") > 0  # the decode tail (≤ 8 live rows) used the int8 kernel
    assert ops.matmuls("fp32") > 0  # decode batches of up to 16 rows and prefill widened to fp32
