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
- int4: `_weight_int4pack_mm_for_cpu` at every row count. Unpacking int4 in eager torch
  costs 1.5-6 ms per 576x1536 weight, more than the kernel's whole matmul at 59 rows.
On CUDA int8 and bf16 widen to bf16; int4 is CPU-only for now (torchao's CUDA int4 kernels
are the next step once a GPU is at hand). torch.ao's `quantize_dynamic` is not used: it
breaks SmolLM2 (perplexity 8.9 -> 31-42).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from solver.plan import ENGINE_BITS as BITS  # the contract says which bit-widths exist
from workers.cpu import widen_dtype

GROUP_SIZE = 32
KERNEL_MAX_ROWS = 8  # above this many rows widening int8 and one matmul beats the int8 kernel (bench.cpu_paths)
INT4_INNER_K_TILES = 2


def kernel_path(bits: int, rows: int, device: str = "cpu") -> str:
    """Which path a `bits`-bit Linear takes for `rows` input rows: "int8 kernel", "int4 kernel", "widen to bf16/fp32", "fp32".

    The one statement of the dispatch rule; the layers below follow it and the tests hold them to it.
    """
    if bits == 32:
        return "fp32"
    if bits == 4:
        return "int4 kernel"
    if bits == 8 and device == "cpu" and rows <= KERNEL_MAX_ROWS:
        return "int8 kernel"
    return "widen to bf16" if widen_dtype(device) == torch.bfloat16 else "widen to fp32"


class Bf16Linear(nn.Module):
    """A Linear with bf16 weights; fp32 in, fp32 out (the matmul in bf16 where it is native, else fp32)."""

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
        x2 = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        y = torch._weight_int4pack_mm_for_cpu(x2, self.weight, self.group_size, self.scales_and_zeros)
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
