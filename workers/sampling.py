"""Next-token choice per sequence: greedy at temperature 0, else temperature + top-p with a per-job seed."""

from __future__ import annotations

import zlib

import torch
from torch import Tensor


def job_generator(seed: int | None, custom_id: str) -> torch.Generator:
    """A generator seeded by the job's `seed`, else by a hash of its id: reruns give the same text."""
    g = torch.Generator()
    g.manual_seed(seed if seed is not None else zlib.crc32(custom_id.encode()))
    return g


def sample_row(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    """One token id from logits [vocab] (fp32)."""
    if temperature <= 0 or generator is None:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < top_p  # always keeps the most likely token
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=generator))
