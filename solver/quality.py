"""Quality indicator of a quantized replica: exp(-Σ per-layer loss) ≈ perplexity(16-bit) / perplexity.

Per-layer losses come from a model's quality profile (`costserve calibrate`, a later issue);
without one, each layer at b bits loses DEFAULT_MODEL_LOSS[b] / layers, spread uniformly.
"""

from __future__ import annotations

import math

# log(perplexity ratio) when every layer is at b bits, measured on SmolLM2-135M on CPU
# (ARCHITECTURE.md): int8 per-channel 8.89 -> 8.92, int4 group-32 8.89 -> ~11.
DEFAULT_MODEL_LOSS = {16: 0.0, 8: math.log(8.92 / 8.89), 4: math.log(11.0 / 8.89)}


def predicted_quality(bits: tuple[int, ...], layer_loss: dict[int, list[float]] | None = None) -> float:
    """Quality in (0, 1] of a replica with layer i at bits[i]; 1.0 is the 16-bit model."""
    if layer_loss is None:
        total = sum(DEFAULT_MODEL_LOSS[b] / len(bits) for b in bits)
    else:
        total = sum(layer_loss[b][i] for i, b in enumerate(bits))
    return math.exp(-total)


def model_quality(bits: tuple[int, ...], model_name: str) -> float:
    """predicted_quality with the model's calibrated per-layer losses when a matching profile exists."""
    from catalog.quality_profiles import load_layer_loss

    loss = load_layer_loss(model_name)
    usable = loss is not None and all(b in loss and len(loss[b]) == len(bits) for b in set(bits) - {16})
    if usable and loss is not None:
        loss = {**loss, 16: loss.get(16, [0.0] * len(bits))}
        return predicted_quality(bits, loss)
    return predicted_quality(bits)
