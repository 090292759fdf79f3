"""Quality indicator of a quantized replica: exp(-Σ per-layer loss) ≈ perplexity(16-bit) / perplexity.

Per-layer losses come from a model's quality profile (`costserve calibrate`, a later issue);
without one, each layer at b bits loses DEFAULT_MODEL_LOSS[b] / layers, spread uniformly.
"""

from __future__ import annotations

import math

# log(perplexity ratio) when every layer is at b bits, measured on SmolLM2-135M on CPU
# (ARCHITECTURE.md): int8 per-channel 8.89 -> 8.92, int4 group-32 8.89 -> ~11.
DEFAULT_MODEL_LOSS = {16: 0.0, 8: math.log(8.92 / 8.89), 4: math.log(11.0 / 8.89)}
# FP8 weights and activations with an FP8 KV cache (vLLM quantization="fp8", kv_cache_dtype="fp8"): the published
# recovery of an FP8 Llama-3 checkpoint, 99.28% of the 16-bit model's OpenLLM score (Neural Magic,
# neuralmagic/Meta-Llama-3-8B-Instruct-FP8 model card). An accuracy ratio standing in for the perplexity ratio
# above until a calibrated profile of the FP8 replica exists.
FP8_QUALITY = 0.9928


def quality_budget(target: float) -> float | None:
    """The quality target as a loss budget: Σ per-layer log-perplexity loss ≤ −ln(target); None when target ≤ 0 (any)."""
    return -math.log(target) if target > 0 else None


def predicted_quality(bits: tuple[int, ...], layer_loss: dict[int, list[float]] | None = None) -> float:
    """Quality in (0, 1] of a replica with layer i at bits[i]; 1.0 is the 16-bit model (and an fp32 one)."""
    kept = [(i, b) for i, b in enumerate(bits) if b != 32]  # fp32 layers (the engine's unquantized ones) lose nothing
    if layer_loss is None:
        total = sum(DEFAULT_MODEL_LOSS[b] / len(bits) for _, b in kept)
    else:
        total = sum(layer_loss[b][i] for i, b in kept)
    return math.exp(-total)


def model_layer_loss(model_name: str, layers: int) -> dict[int, list[float]]:
    """Per-layer log-perplexity loss by bit-width: the model's calibrated profile when it matches, else the uniform default."""
    from catalog.quality_profiles import load_layer_loss

    default = {b: [loss / layers] * layers for b, loss in DEFAULT_MODEL_LOSS.items()}
    measured = load_layer_loss(model_name)
    if measured is None or not all(b in measured and len(measured[b]) == layers for b in DEFAULT_MODEL_LOSS if b != 16):
        return default
    return {**default, **{b: v for b, v in measured.items() if len(v) == layers}}


def model_quality(bits: tuple[int, ...], model_name: str) -> float:
    """predicted_quality with the model's calibrated per-layer losses when a matching profile exists."""
    return predicted_quality(bits, model_layer_loss(model_name, len(bits)))
