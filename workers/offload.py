"""Host-resident decoder layers of a CPU–GPU hybrid replica (ScheInfer, arXiv 2411.15715).

A `HostResidentBlock` keeps one decoder layer in host memory and, per phase (prefill: more
than one token per row; decode: one), either computes it on the host CPU — activations go
to the host and back — or streams it: its weights are copied to the stage's device and the
layer runs there with them (`torch.func.functional_call`, the layer's own KV cache kept).
A `WeightStreamer` does the copies on a side CUDA stream from pinned memory and fetches the
next streamed layer of the same phase while the current one computes, so at most two
layers' weights occupy the device at once.

On a machine without CUDA the stage's device is the CPU: the same code runs, the copies are
no-ops, and the tokens must equal those of the single-device engine (tests check it).
"""

from __future__ import annotations

from collections import Counter
from itertools import chain
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

PHASES = ("prefill", "decode")


class WeightStreamer:
    """Copies host-resident layers' weights to `device` ahead of use; one per pipeline stage."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.pending: dict[int, tuple[dict[str, Tensor], torch.cuda.Event | None]] = {}
        self.copies = 0  # layer copies started, for tests and benches

    def fetch(self, block: HostResidentBlock) -> None:
        """Start copying `block`'s weights to the device (a no-op if already under way); drops any other prefetch."""
        if id(block) in self.pending:
            return
        self.pending.clear()  # one layer ahead at most: bounded device memory
        self.copies += 1
        if self.stream is None:
            self.pending[id(block)] = ({k: t.to(self.device) for k, t in block.host_weights().items()}, None)
            return
        with torch.cuda.stream(self.stream):
            copied = {k: t.to(self.device, non_blocking=True) for k, t in block.host_weights().items()}
            event = torch.cuda.Event()
            event.record(self.stream)
        self.pending[id(block)] = (copied, event)

    def take(self, block: HostResidentBlock, prefetch: HostResidentBlock | None) -> dict[str, Tensor]:
        """`block`'s weights on the device, ready for the compute stream; starts fetching `prefetch` next."""
        self.fetch(block)
        copied, event = self.pending.pop(id(block))
        if event is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(event)
            for t in copied.values():
                t.record_stream(compute)  # allocated on the copy stream, freed after compute is done with it
        if prefetch is not None:
            self.fetch(prefetch)
        return copied


class HostResidentBlock(nn.Module):
    """A decoder layer in host memory, run per phase on the host "cpu" or "stream"ed to `device`."""

    def __init__(
        self, block: nn.Module, prefill: str, decode: str, device: torch.device, streamer: WeightStreamer
    ) -> None:
        super().__init__()
        self.block = block
        self.modes = {"prefill": prefill, "decode": decode}
        self.device = device
        self.streamer = streamer
        self.next: dict[str, HostResidentBlock | None] = {p: None for p in PHASES}  # set by link_prefetch
        self.kv_device = torch.device("cpu") if decode == "cpu" else device  # the cache lives where decode reads it
        self.calls: Counter[tuple[str, str]] = Counter()  # (phase, mode) -> forward calls
        if device.type == "cuda" and "stream" in self.modes.values():
            _pin(block)

    @property
    def attention(self) -> Any:
        """The wrapped layer's attention (StageModel.setup_cache puts the KV cache there): a model.Attention."""
        return self.block.attention

    def _apply(self, fn, recurse=True):
        return self  # stays in host memory whatever .to() the stage is given

    def host_weights(self) -> dict[str, Tensor]:
        """The layer's parameters and buffers in host memory, KV cache excluded."""
        named = chain(self.block.named_parameters(), self.block.named_buffers())
        return {name: t for name, t in named if ".kv_cache." not in name}

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, slots: Tensor, pos: Tensor) -> Tensor:
        phase = "prefill" if x.shape[1] > 1 else "decode"
        mode = self.modes[phase]
        self.calls[(phase, mode)] += 1
        if mode == "cpu":
            host = torch.device("cpu")
            return self.block(*(t.to(host) for t in (x, cos, sin, mask, slots, pos))).to(x.device)
        weights = self.streamer.take(self, self.next[phase])
        return functional_call(self.block, weights, (x, cos, sin, mask, slots, pos))


def link_prefetch(layers: nn.ModuleList) -> None:
    """Point each streamed host layer at the next layer streamed in the same phase (the first again after the last)."""
    host = [layer for layer in layers if isinstance(layer, HostResidentBlock)]
    for phase in PHASES:
        streamed = [b for b in host if b.modes[phase] == "stream"]
        for b, nxt in zip(streamed, streamed[1:] + streamed[:1]):
            b.next[phase] = nxt


def _pin(module: nn.Module) -> None:
    """Move every parameter and buffer of `module` into page-locked host memory (async copies need it)."""
    for m in module.modules():
        for p in m._parameters.values():
            if p is not None:
                p.data = p.data.pin_memory()
        for name, b in m._buffers.items():
            if b is not None:
                m._buffers[name] = b.pin_memory()
