"""costserve profile: a real timing run on the tiny model, and the cost model's arithmetic on profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from solver.device_profile import decode_tokens_per_s, layer_decode_ms, prefill_tokens_per_s


def test_profile_measures_every_point(tiny_llama_dir: Path) -> None:
    from workers.profile import profile_device

    calls: list[tuple[int, int]] = []
    prof = profile_device(tiny_llama_dir, "tiny", bits=(32, 8), batches=(1, 4), contexts=(16, 64), repeats=2,
                          progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (2 * (2 * 2 + 1) + 2,) * 2
    for b in ("32", "8"):
        assert set(prof["layer_decode_ms"][b]) == {"1", "4"}
        assert all(ms > 0 for by_ctx in prof["layer_decode_ms"][b].values() for ms in by_ctx.values())
        assert prof["layer_prefill_ms_per_token"][b] > 0
    assert decode_tokens_per_s(prof, [32] * 4, 4, 32) > 0


def test_profile_prediction_arithmetic() -> None:
    prof = {
        "layer_decode_ms": {"8": {"1": {"100": 1.0, "300": 2.0}, "5": {"100": 2.0, "300": 4.0}}},
        "head_decode_ms": {"1": 0.5, "5": 1.0},
        "layer_prefill_ms_per_token": {"8": 0.25},
    }
    assert layer_decode_ms(prof, 8, 1, 200) == pytest.approx(1.5)
    assert layer_decode_ms(prof, 8, 3, 100) == pytest.approx(1.5)
    assert layer_decode_ms(prof, 8, 9, 100) == pytest.approx(3.0)  # extrapolated from the last two batches
    # 2 layers at batch 5, context 300: step = 2 * 4.0 + 1.0 ms -> 5 tokens / 9 ms
    assert decode_tokens_per_s(prof, [8, 8], 5, 300) == pytest.approx(5 / 9.0 * 1000)
    assert prefill_tokens_per_s(prof, [8] * 4) == pytest.approx(1000.0)
