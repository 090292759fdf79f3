"""Unpack torch's CPU int4 weight layout into a dense matrix, for prefill-sized matmuls.

`torch._convert_weight_to_int4pack_for_cpu` stores the outputs of an int4 layer in blocks of
BN outputs: `[N/BN][K][BN/2]` bytes, byte j of a block's row k holding output j in its low
nibble and output j + BN/2 in its high nibble. BN depends on the CPU kernel torch dispatches to
(64 with AVX512, 32 with AVX2: aten/src/ATen/native/cpu/int4mm_kernel.cpp), so `int4_block_n`
finds it by packing a probe in this process rather than reading CPU flags; `tests/test_kernel_paths.py`
checks the unpacking against the kernel, so a torch upgrade that changes the layout fails there.
The values are `(q - 8) * scale + zero`, scale and zero per group of `group_size` inputs.

Written here because no library unpacks this layout fast: torch has no inverse of the pack, and
torchao's CPU int4 tensor dequantises by multiplying an identity matrix through the kernel, which
costs as much as a K-row matmul (5 ms for a 576x1536 weight here, against 0.9 ms below).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import torch
from torch import Tensor

BLOCK_CANDIDATES = (64, 32, 16)  # outputs per block of the layouts torch's CPU kernels use
UNPACK_CHUNK_ELEMENTS = 1 << 22  # weights unpacked at once: at most 16 MiB of fp32 beside a layer, however large


@functools.cache
def _nibble_pairs() -> Tensor:
    """For each byte value, its (low − 8, high − 8) nibbles as two fp32 packed in one int64: one lookup yields both."""
    pairs = torch.tensor([[(b & 15) - 8, (b >> 4) - 8] for b in range(256)], dtype=torch.float32)
    return pairs.view(torch.int64).view(256)


def unpack_int4(packed: Tensor, scales_and_zeros: Tensor, group_size: int, dtype: torch.dtype) -> Iterator[Tensor]:
    """The transposed weights Wᵀ of an int4pack layer, `[K, C]` chunks in `dtype` from output 0 on (C a multiple of the block).

    `packed` is `[N, K/2]` uint8 from `_convert_weight_to_int4pack_for_cpu` in this process, N a
    multiple of `int4_block_n()`; `scales_and_zeros` is `[K/group_size, N, 2]`.
    `torch.cat([x @ w for w in ...], 1)` is x @ Wᵀ. Cost ~0.9 ms per million weights on 2 threads:
    one table lookup, one multiply-add, one cast.
    """
    block_n = int4_block_n()
    if block_n is None:
        raise RuntimeError("this torch build packs int4 in a layout costserve cannot read; use the int4 kernel")
    return _unpacked(packed, scales_and_zeros, group_size, dtype, block_n)


@functools.cache
def int4_block_n() -> int | None:
    """Outputs per block of the int4pack layout in this process (64 or 32), found by packing a probe; None if none fits.

    The probe is read back by the same code that unpacks layers, with scale 1 and zero 8, so each value is q itself.
    """
    probe = torch.randint(0, 16, (64, 64), dtype=torch.int32, generator=torch.Generator().manual_seed(0))
    packed = torch._convert_weight_to_int4pack_for_cpu(probe, 2)
    scale_one_zero_eight = torch.tensor([1.0, 8.0]).expand(2, 64, 2)  # two groups of 32 inputs, 64 outputs
    for block_n in BLOCK_CANDIDATES:
        unpacked = torch.cat(list(_unpacked(packed, scale_one_zero_eight, 32, torch.float32, block_n)), dim=1)
        if torch.equal(unpacked, probe.t().float()):
            return block_n
    return None


def _unpacked(
    packed: Tensor, scales_and_zeros: Tensor, group_size: int, dtype: torch.dtype, block_n: int
) -> Iterator[Tensor]:
    """`unpack_int4` for the layout with `block_n`-output blocks."""
    n, k = packed.shape[0], packed.shape[1] * 2
    groups, half = k // group_size, block_n // 2
    per_chunk = max(1, UNPACK_CHUNK_ELEMENTS // (k * block_n))
    by_block = packed.view(n // block_n, k, half)
    for b0 in range(0, n // block_n, per_chunk):
        nb = min(n // block_n, b0 + per_chunk) - b0
        # [nb, K, BN/2, (low, high)] -> [K, nb, 2, BN/2]: output index = block·BN + nibble·BN/2 + byte
        q = _nibble_pairs().index_select(0, by_block[b0 : b0 + nb].reshape(-1).int()).view(torch.float32)
        q = q.view(nb, k, half, 2).permute(1, 0, 3, 2).view(groups, group_size, nb, 2, half)
        sz = scales_and_zeros[:, b0 * block_n : (b0 + nb) * block_n].float()
        per_group = (groups, 1, nb, 2, half)
        w = torch.empty(groups, group_size, nb, 2, half)
        torch.addcmul(sz[..., 1].reshape(per_group), q, sz[..., 0].reshape(per_group), out=w)
        yield w.view(k, nb * block_n).to(dtype)
