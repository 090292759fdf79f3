"""Device profiling: per-layer decode and prefill latency on this machine, for the planner's cost model.

A real decoder layer (layer 0 of the model) is timed at each bit-width, batch size and
context length — decode is one new token per row against a filled KV cache, prefill is a
256-token prompt — plus the final norm + LM head per batch size. The KV cache dtype follows
the engine: fp32 for 32-bit layers, bf16 otherwise. Times are medians, in milliseconds.

The layer is timed as a stack of STACK distinct copies, each with its own KV cache, and the
time divided by STACK: a whole model's weights and caches do not fit the CPU's last-level
cache, and timing one layer alone (its weights and cache hot) predicted decode ~2x too fast.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from solver.plan import Replica
from workers.loader import build_stage, read_model_args
from workers.quantize import quantize_block

BATCHES = (1, 4, 16, 64)
CONTEXTS = (128, 512)
# A quick profile (`costserve profile --quick`, `submit --profile-first`): three batch sizes, one context, 3 repeats;
# about 15-20 s for SmolLM2-135M on 2 cores, against about a minute for the full one.
QUICK = {"batches": (1, 16, 64), "contexts": (256,), "repeats": 3}
PREFILL_TOKENS = 256
STACK = 8  # distinct layer copies per timing: > 32 MiB of weights + KV cache at batch 64
# The engine sizes its cache for the longest job, so decode reads a strided slice of it
# (which bmm copies); a cache exactly `context` long would hide that cost.
CACHE_HEADROOM = 128


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def profile_device(
    model_dir: Path,
    model: str,
    device: str = "cpu",
    bits: tuple[int, ...] = (32, 16, 8, 4),
    batches: tuple[int, ...] = BATCHES,
    contexts: tuple[int, ...] = CONTEXTS,
    repeats: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Measure and return the profile (JSON-ready); `progress(done, total)` after each measurement."""
    args = read_model_args(model_dir)
    stage = build_stage(model_dir, args, Replica.uniform(args.n_layers, 32).stages[0], device)
    fp32_layer = stage.layers[0]
    decode: dict[str, dict[str, dict[str, float]]] = {}
    prefill: dict[str, float] = {}
    total, done = len(bits) * (len(batches) * len(contexts) + 1) + len(batches), 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    with torch.inference_mode():
        for b in bits:
            layer = copy.deepcopy(fp32_layer)
            quantize_block(layer, b)
            layers = [layer] + [copy.deepcopy(layer) for _ in range(min(STACK, args.n_layers) - 1)]
            kv = torch.float32 if b == 32 else torch.bfloat16
            decode[str(b)] = {}
            for batch in batches:
                decode[str(b)][str(batch)] = {}
                for ctx in contexts:
                    decode[str(b)][str(batch)][str(ctx)] = _time_layer(
                        stage, layers, batch, 1, ctx, kv, device, repeats
                    )
                    step()
            prefill[str(b)] = (
                _time_layer(stage, layers, 1, PREFILL_TOKENS, PREFILL_TOKENS, kv, device, repeats) / PREFILL_TOKENS
            )
            step()
        head: dict[str, float] = {}
        norm, output = stage.norm, stage.output
        assert norm is not None and output is not None  # the profiled stage is the last: it has the head
        for batch in batches:
            h = torch.randn(batch, args.dim, device=device)
            head[str(batch)] = _median_ms(lambda: output(norm(h)), repeats)  # noqa: B023 (called now)
            step()
    return {
        "device": device,
        "model": model,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "layers": args.n_layers,
        "layer_decode_ms": decode,
        "layer_prefill_ms_per_token": prefill,
        "head_decode_ms": head,
    }


def _time_layer(
    stage: Any,
    layers: list[Any],
    batch: int,
    tokens: int,
    context: int,
    kv: torch.dtype,
    device: str,
    repeats: int,
) -> float:
    """ms per layer for a forward of `tokens` new tokens per row at positions ending at `context` - 1, through `layers`."""
    stage.setup_cache(batch, context + CACHE_HEADROOM, kv, device)
    for i, layer in enumerate(layers):
        layer.attention.kv_cache = stage.layers[i].attention.kv_cache
    pos = torch.arange(context - tokens, context, device=device).repeat(batch, 1)
    slots = torch.arange(batch, device=device)
    h = torch.randn(batch, tokens, stage.args.dim, device=device)
    cos, sin, mask = stage.position_inputs(pos)

    def run() -> None:
        for layer in layers:
            layer(h, cos, sin, mask, slots, pos)  # same input each time: only the cost matters

    return _median_ms(run, repeats) / len(layers)
