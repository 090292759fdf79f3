"""Quantized layers take the kernel path `workers.quantize.kernel_path` states, for decode- and prefill-sized inputs.

Issue 21: int8 layers above 8 rows widened their weights to bf16, which an AVX2-only CPU
emulates ~10x slower than fp32, and nothing noticed. These tests record every aten op a layer
(or a whole tiny-Llama generate) dispatches, with its dtypes, under each of the two machine
kinds `workers/cpu.py` tells apart (forced with $COSTSERVE_CPU_MATMUL), and assert the path.
No timing: the op that runs is the thing under test.
"""

from __future__ import annotations

import os
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
from workers.quantize import INT4_KERNEL_MAX_ROWS, kernel_path, quantized_linear

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
        assert ops.count("_weight_int8pack_mm") == ops.count("_weight_int4pack_mm_for_cpu") == 0


def test_the_rule_for_decode_and_prefill_sizes(cpu_kind: str) -> None:
    """int8 uses its kernel only for a decode tail (≤ 8 rows), int4 for decode batches; prefill widens to the fast dtype."""
    assert kernel_path(8, 1) == kernel_path(8, 8) == "int8 kernel"
    assert kernel_path(8, 64) == kernel_path(8, 2048) == kernel_path(16, 64) == f"widen to {cpu_kind}"
    int4_max = INT4_KERNEL_MAX_ROWS[cpu.matmul_dtype()]
    assert 64 <= int4_max < 512  # every decode batch of the demo on the kernel, every prefill chunk of 8 prompts off it
    assert kernel_path(4, 1) == kernel_path(4, int4_max) == "int4 kernel"
    assert kernel_path(4, int4_max + 1) == kernel_path(4, 2048) == f"widen to {cpu_kind}"
    assert kernel_path(4, 2048, out_features=48) == "int4 kernel"  # not whole blocks of the packed layout: only the kernel reads them


@pytest.mark.parametrize("shape", [(256, 384), (576, 1536), (1536, 576), (64, 64)])
def test_unpacked_int4_equals_the_kernel(shape: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """The unpacking reads torch's int4pack layout exactly, as this CPU's kernel packs it (64-output blocks with AVX512,
    32 with AVX2: run with ATEN_CPU_CAPABILITY=avx2 to see the other); a torch upgrade that changes the layout fails here.

    Wᵀ from `unpack_int4` against the kernel's own product with the identity (row k of I·Wᵀ is row k of Wᵀ),
    in one chunk and in one 64-output block per chunk.
    """
    from workers import int4_unpack
    from workers.quantize import Int4Linear

    torch.manual_seed(1)
    in_f, out_f = shape
    layer = Int4Linear(nn.Linear(in_f, out_f, bias=False))
    eye = torch.eye(in_f, dtype=torch.bfloat16)
    reference = torch._weight_int4pack_mm_for_cpu(eye, layer.weight, layer.group_size, layer.scales_and_zeros).float()
    whole = list(int4_unpack.unpack_int4(layer.weight, layer.scales_and_zeros, layer.group_size, torch.float32))
    monkeypatch.setattr(int4_unpack, "UNPACK_CHUNK_ELEMENTS", 1)
    chunks = list(int4_unpack.unpack_int4(layer.weight, layer.scales_and_zeros, layer.group_size, torch.float32))
    assert len(whole) == 1 and len(chunks) == out_f // int4_unpack.int4_block_n()
    torch.testing.assert_close(whole[0], reference, rtol=0, atol=reference.abs().max().item() / 128)  # bf16 rounding
    assert torch.equal(torch.cat(chunks, dim=1), whole[0])
    x = torch.randn(600, in_f)
    expected = torch._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), layer.weight, layer.group_size, layer.scales_and_zeros).float()
    torch.testing.assert_close(layer(x), expected, rtol=0.02, atol=0.02 * expected.abs().max().item())


UNPACK_CHECK = """
import torch
from torch import nn
from workers.int4_unpack import int4_block_n, unpack_int4
from workers.quantize import Int4Linear
layer = Int4Linear(nn.Linear(256, 384, bias=False))
reference = torch._weight_int4pack_mm_for_cpu(torch.eye(256, dtype=torch.bfloat16), layer.weight, 32, layer.scales_and_zeros).float()
(w,) = unpack_int4(layer.weight, layer.scales_and_zeros, 32, torch.float32)
print(torch.backends.cpu.get_cpu_capability(), int4_block_n(), (w - reference).abs().max().item() / reference.abs().max().item())
"""


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"), reason="needs an x86 CPU with AVX2")
def test_unpacking_follows_the_layout_of_an_avx2_cpu_too() -> None:
    """torch packs int4 in 32-output blocks when it dispatches to AVX2 and 64 with AVX512: both unpack exactly.

    Found when an AVX512 machine run as AVX2 (ATEN_CPU_CAPABILITY=avx2) generated garbage: the unpacking
    assumed 64-output blocks. Each capability runs in its own process (torch reads the variable at start).
    """
    import subprocess
    import sys

    seen = {}
    for capability in ("avx2", torch.backends.cpu.get_cpu_capability().lower()):
        env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
        out = subprocess.run([sys.executable, "-c", UNPACK_CHECK], env=env, capture_output=True, text=True, check=True).stdout.split()
        seen[out[0]] = int(out[1])
        assert float(out[2]) <= 1 / 128, out  # equal up to the kernel's bf16 output
    assert seen["AVX2"] == 32 and seen.get("AVX512", 64) == 64, seen


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


def test_an_int4_replica_unpacks_for_prefill_and_keeps_the_kernel_for_decode(tiny_llama_dir: Path, cpu_kind: str) -> None:
    """A whole int4 generate: prefill chunks of 8 prompts unpack and widen, decode batches stay on the int4 kernel."""
    from solver.plan import Replica
    from workers.engine import Engine

    with Engine(Replica.uniform(4, 4, decode_micro_batch=16, prefill_micro_batch=8), model=tiny_llama_dir) as engine:
        jobs = [JobStub(custom_id=f"j{i}", prompt=f"prompt number {i} " * (12 + i % 5), max_tokens=4 + i % 7) for i in range(24)]
        with OpRecorder() as ops:
            engine.generate(jobs)
    other = "bf16" if cpu_kind == "fp32" else "fp32"
    assert ops.count("index_select") > 0  # the nibble-table lookup of workers/int4_unpack.py: prefill unpacked
    assert ops.matmuls(cpu_kind) > 0
    assert ops.count("_weight_int4pack_mm_for_cpu") > 0  # decode batches (at most 16 rows here)
    if cpu_kind == "fp32":
        assert ops.matmuls(other) == 0, {k: v for k, v in ops.calls.items() if k[1] == other}
