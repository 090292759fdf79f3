"""Weight-only quantized Linear layers and the per-layer bit-width swap.

Bits per decoder layer: 32 (fp32 weights), 16 (bf16 weights), 8 (int8, symmetric per
output channel) or 4 (asymmetric per group of GROUP_SIZE input channels, packed two per
byte). Activations stay fp32 between layers.

Which kernel runs (measured in `python -m bench.cpu_paths`, see `workers/cpu.py`):
- int8, at most KERNEL_MAX_ROWS rows (the tail of a decode batch): torch's int8 weight-only
  kernel `_weight_int8pack_mm`, the fastest there on every CPU measured.
- int8, more rows (decode batches, prefill) and bf16 layers: the weights widened to
  `workers.cpu.matmul_dtype()` — bf16 where the CPU has bf16 matrix units, fp32 where bf16
  is emulated — and one matmul. Widening to bf16 on an AVX2-only CPU made int8 decode 5x
  slower than fp32 (issue 21: 59 rows 7.0 ms vs 0.70 ms); widening to fp32 there costs 0.94 ms.
- int4, at most INT4_KERNEL_MAX_ROWS rows (decode batches): `_weight_int4pack_mm_for_cpu`. Its
  time grows with the rows (0.58 ms at 59 rows, 4.9 ms at 512 for a 576x1536 weight, 2 threads), so
- int4, more rows (prefill): the packed weights unpacked to `matmul_dtype()` (`workers/int4_unpack.py`,
  ~0.9 ms for a 576x1536 weight) and one matmul: 1.3-1.6 ms at 512 rows. Issue 21: the int4 kernel
  at every row count kept the demo's mixed replica below fp32.
On CUDA int8 and bf16 widen to bf16; int4 is CPU-only for now (torchao's CUDA int4 kernels
are the next step once a GPU is at hand). torch.ao's `quantize_dynamic` is not used: it
breaks SmolLM2 (perplexity 8.9 -> 31-42).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from solver.plan import ENGINE_BITS as BITS  # the contract says which bit-widths exist
from workers.cpu import widen_dtype
from workers.int4_unpack import int4_block_n, unpack_int4

GROUP_SIZE = 32
KERNEL_MAX_ROWS = 8  # above this many rows widening int8 and one matmul beats the int8 kernel (bench.cpu_paths)
# Above this many rows unpacking int4 and one matmul beats the int4 kernel, by the dtype the CPU widens to
# (`python -m bench.cpu_paths`, 576x1536 and 1536x576, 2 threads). With bf16 units the kernel costs 0.0094 ms a
# row and unpacking 0.95 ms plus a bf16 matmul: crossover ~110 rows (128 rows: kernel 1.20 ms, unpack 1.06).
# AVX2 only (the same machine under ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2): the kernel costs 0.017 ms
# a row, unpacking to fp32 0.9 ms plus an fp32 matmul: crossover ~64 rows (59: 1.02 vs 1.12 ms; 128: 2.17 vs 1.39).
INT4_KERNEL_MAX_ROWS = {torch.bfloat16: 112, torch.float32: 64}
INT4_INNER_K_TILES = 2


def kernel_path(bits: int, rows: int, device: str = "cpu", out_features: int = 0) -> str:
    """Which path a `bits`-bit Linear takes for `rows` input rows: "int8 kernel", "int4 kernel", "widen to bf16/fp32", "fp32".

    The one statement of the dispatch rule; the layers below follow it and the tests hold them to it.
    `out_features` matters only for int4: the unpacking reads whole blocks of the packed layout (64
    or 32 outputs, `workers/int4_unpack.py`), so a layer with a partial block always takes the kernel.
    """
    if bits == 32:
        return "fp32"
    if bits == 4:
        block_n = int4_block_n()
        if rows <= INT4_KERNEL_MAX_ROWS[widen_dtype(device)] or block_n is None or out_features % block_n:
            return "int4 kernel"
    if bits == 8 and device == "cpu" and rows <= KERNEL_MAX_ROWS:
        return "int8 kernel"
    return "widen to bf16" if widen_dtype(device) == torch.bfloat16 else "widen to fp32"


class Bf16Linear(nn.Module):
    """A Linear with bf16 weights; fp32 in, fp32 out (the matmul in bf16 where it is native, else fp32)."""

    weight: Tensor
    bias: Tensor | None

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: Tensor) -> Tensor:
        dtype = widen_dtype(x.device.type)
        y = torch.nn.functional.linear(x.to(dtype), self.weight.to(dtype)).float()
        return y if self.bias is None else y + self.bias


class Int8Linear(nn.Module):
    """Weight-only int8, one fp scale per output channel: W ≈ q · scale."""

    weight: Tensor
    scales: Tensor
    bias: Tensor | None

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-8)
        self.register_buffer("weight", torch.round(w / scale[:, None]).clamp(-128, 127).to(torch.int8))
        self.register_buffer("scales", scale.to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: Tensor) -> Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        if kernel_path(8, x2.shape[0], x2.device.type) == "int8 kernel":
            y = torch._weight_int8pack_mm(x2.to(torch.bfloat16), self.weight, self.scales).float()
        else:
            dtype = widen_dtype(x2.device.type)
            # per-output-channel scales commute with the matmul: (x @ qᵀ) · s
            y = ((x2.to(dtype) @ self.weight.to(dtype).t()) * self.scales.to(dtype)).float()
        y = y.reshape(*x.shape[:-1], -1)
        return y if self.bias is None else y + self.bias


class Int4Linear(nn.Module):
    """Weight-only int4, asymmetric per group of GROUP_SIZE inputs: W ≈ (q − 8) · scale + zero."""

    weight: Tensor
    scales_and_zeros: Tensor
    bias: Tensor | None

    def __init__(self, linear: nn.Linear, group_size: int = GROUP_SIZE) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        out_f, in_f = w.shape
        if in_f % group_size:
            raise ValueError(f"int4 needs in_features divisible by {group_size}, got {in_f}")
        self.group_size, self.out_features, self.in_features = group_size, out_f, in_f
        g = w.reshape(out_f, in_f // group_size, group_size)
        lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15).clamp(min=1e-8)
        q = torch.round((g - lo) / scale).clamp(0, 15).to(torch.int32).reshape(out_f, in_f)
        zero = lo + 8 * scale  # the kernels' convention: w = (q - 8) * scale + zero
        # [in/group, out, 2]: scale and zero of each group, as the int4pack kernels take them
        sz = torch.stack([scale.squeeze(-1).t(), zero.squeeze(-1).t()], dim=-1).contiguous()
        self.register_buffer("scales_and_zeros", sz.to(torch.bfloat16))
        self.register_buffer("weight", torch._convert_weight_to_int4pack_for_cpu(q, INT4_INNER_K_TILES))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: Tensor) -> Tensor:
        if x.is_cuda:
            raise NotImplementedError("int4 layers run on the CPU only; use 8 or 16 bits on CUDA")
        x2 = x.reshape(-1, x.shape[-1])
        if kernel_path(4, x2.shape[0], out_features=self.out_features) == "int4 kernel":
            y = torch._weight_int4pack_mm_for_cpu(
                x2.to(torch.bfloat16), self.weight, self.group_size, self.scales_and_zeros
            )
        else:
            dtype = widen_dtype("cpu")
            xd = x2.to(dtype)
            parts = [xd @ w for w in unpack_int4(self.weight, self.scales_and_zeros, self.group_size, dtype)]
            y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        y = y.float().reshape(*x.shape[:-1], -1)
        return y if self.bias is None else y + self.bias


def quantized_linear(linear: nn.Linear, bits: int) -> nn.Module:
    """The Linear at `bits` (32 returns it unchanged)."""
    if bits == 32:
        return linear
    if bits == 16:
        return Bf16Linear(linear)
    if bits == 8:
        return Int8Linear(linear)
    if bits == 4:
        return Int4Linear(linear)
    raise ValueError(f"bits must be one of {BITS}, got {bits}")


def quantize_block(block: nn.Module, bits: int) -> None:
    """Swap every Linear inside one decoder layer for its `bits` version, in place."""
    for name, child in list(block.named_children()):
        if isinstance(child, nn.Linear):
            setattr(block, name, quantized_linear(child, bits))
        else:
            quantize_block(child, bits)


def parameter_bytes(module: nn.Module) -> int:
    """Bytes of all parameters and persistent buffers (weights, scales) of a module."""
    tensors = {id(t): t for t in list(module.parameters()) + list(module.buffers()) if t is not None}
    return sum(t.nbytes for t in tensors.values())
