"""Measured device profiles (`costserve profile`) in the cost model: decode and prefill speed of a replica.

A profile gives, per bit-width, the latency of one decoder layer at several batch sizes
and context lengths, and of the LM head per batch size. A replica's decode step is the sum
over its layers (each at its own bits) plus the head; throughput = batch / step. Values
between measured points are interpolated linearly (batch, then context) and extrapolated
from the nearest two points.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from solver.costmodel import StepShape


def default_profile_path(device: str, model: str) -> Path:
    """Where `costserve profile` writes, and the planner looks for, the profile of `model` on `device`."""
    from catalog.home import costserve_home

    return costserve_home() / "profiles" / f"{device}-{model}.json"


def load_device_profile(path: Path) -> dict[str, Any]:
    """Read a profile JSON written by `costserve profile`."""
    return json.loads(Path(path).read_text())


def _interp(points: dict[str, float], x: float) -> float:
    xs = sorted((float(k), v) for k, v in points.items())
    if len(xs) == 1:
        return xs[0][1]
    for (x0, y0), (x1, y1) in zip(xs, xs[1:]):
        if x <= x1 or (x1, y1) == xs[-1]:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    raise AssertionError("unreachable")


def layer_decode_ms(profile: dict[str, Any], bits: int, batch: float, context: float) -> float:
    """ms of one decoder layer's decode step at `bits`, `batch` rows, `context` cached tokens."""
    by_batch = profile["layer_decode_ms"][str(bits)]
    at_context = {b: _interp(ctx, context) for b, ctx in by_batch.items()}
    return _interp(at_context, batch)


def decode_step_ms(profile: dict[str, Any], bits: list[int], batch: float, context: float) -> float:
    """Predicted ms of one decode step of a replica with layer i at bits[i]: every layer plus the LM head."""
    return sum(layer_decode_ms(profile, b, batch, context) for b in bits) + _interp(profile["head_decode_ms"], batch)


def decode_tokens_per_s(profile: dict[str, Any], bits: list[int], batch: float, context: float) -> float:
    """Predicted decode throughput (tokens/s) of a replica with layer i at bits[i], `batch` rows at `context` tokens."""
    return batch / decode_step_ms(profile, bits, batch, context) * 1000


def decode_run_tokens_per_s(profile: dict[str, Any], bits: list[int], shapes: list[tuple[int, int]]) -> float:
    """Predicted decode tokens/s over a run's decode passes, each (rows, context tokens attended)."""
    total_ms = sum(decode_step_ms(profile, bits, rows, ctx) for rows, ctx in shapes)
    return sum(rows for rows, _ in shapes) / total_ms * 1000 if total_ms > 0 else 0.0


def prefill_tokens_per_s(profile: dict[str, Any], bits: list[int]) -> float:
    """Predicted prefill throughput (prompt tokens/s) of a replica, head excluded."""
    return 1000 / sum(profile["layer_prefill_ms_per_token"][str(b)] for b in bits)


PROFILE_BATCH = 64  # sequences: the batch a measured CPU profile's class throughput is predicted at


def class_requests_per_s(
    profile: dict[str, Any], bits: list[int], input_tokens: float, output_tokens: float, batch: int = PROFILE_BATCH
) -> float:
    """Requests/s of one replica on requests of these mean lengths, from the profile alone (no roofline).

    A batch of `batch` prompts prefills (prompt tokens × per-token layer time), then decodes
    `output_tokens` steps at the mean context (input + output / 2), as the roofline model does.
    """
    prefill_ms = batch * input_tokens * sum(profile["layer_prefill_ms_per_token"][str(b)] for b in bits)
    decode_ms = max(1.0, output_tokens) * decode_step_ms(profile, bits, batch, input_tokens + output_tokens / 2)
    return batch / ((prefill_ms + decode_ms) / 1000)


@dataclass(frozen=True)
class CpuProfile:
    """A `costserve profile --device cpu` profile of one model, measured on `threads` threads.

    The one adapter from a CPU profile to any host the planner prices (a CPU offering, this
    machine, a hybrid replica's host): layer time ∝ 1 / vCPUs, so a host of `vcpus` vCPUs
    runs `vcpus / threads` times as fast as the profiled one.
    """

    data: dict[str, Any]

    @classmethod
    def matching(cls, profile: dict[str, Any] | None, model: str, layers: int) -> CpuProfile | None:
        """The profile when it was measured on a CPU for this model (name and layer count), else None.

        A profile of another device or model says nothing about this one.
        """
        if (
            profile is None
            or profile.get("device") != "cpu"
            or profile.get("model") != model
            or profile.get("layers") != layers
        ):
            return None
        return cls(profile)

    def speedup(self, vcpus: int) -> float:
        """How many times faster than the profiled threads a host of `vcpus` vCPUs runs a layer."""
        return max(1, vcpus) / int(self.data["threads"])

    def has_bits(self, bits: int) -> bool:
        """Whether the profile measured layers at `bits` bits."""
        return str(bits) in self.data["layer_decode_ms"] and str(bits) in self.data["layer_prefill_ms_per_token"]

    def class_requests_per_s(self, bits: list[int], input_tokens: float, output_tokens: float, vcpus: int) -> float:
        """Requests/s of a whole replica (layer i at bits[i]) on `vcpus` vCPUs, on requests of these mean lengths."""
        return class_requests_per_s(self.data, bits, input_tokens, output_tokens) * self.speedup(vcpus)

    def layer_seconds(self, bits: int, step: StepShape, vcpus: int) -> tuple[float, float]:
        """(prefill pass, decode step) seconds of one layer at `bits` on `vcpus` vCPUs (cf. solver.costmodel.layer_seconds)."""
        per_token_ms = self.data["layer_prefill_ms_per_token"][str(bits)]
        prefill_ms = per_token_ms * step.prompt_tokens * step.prefill_sequences
        decode_ms = layer_decode_ms(self.data, bits, step.decode_batch, step.context_tokens)
        return prefill_ms / 1000 / self.speedup(vcpus), decode_ms / 1000 / self.speedup(vcpus)
