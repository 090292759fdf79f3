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


def test_profile_quick_takes_the_quick_points(cli, tiny_llama_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    from costserve.cli import app
    from workers.profile import QUICK

    out = tmp_path / "quick.json"
    result = cli.invoke(app, ["profile", "--device", "cpu", "--quick", "--model", str(tiny_llama_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    prof = json.loads(out.read_text())
    for by_batch in prof["layer_decode_ms"].values():
        assert sorted(int(b) for b in by_batch) == list(QUICK["batches"])
        assert all(sorted(int(c) for c in by_ctx) == list(QUICK["contexts"]) for by_ctx in by_batch.values())


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


def test_a_cpu_profile_replaces_the_roofline_for_cpu_offerings_of_that_model() -> None:
    from catalog.load import load_gpus, load_models, load_offerings
    from solver.candidates import build_candidates
    from solver.costmodel import ModelShape
    from solver.device_profile import class_requests_per_s
    from solver.workload import bucket_workload

    gpus, offerings, models = load_gpus(), load_offerings(), load_models().set_index("model", drop=False)
    model = ModelShape.from_row(models.loc["SmolLM2-135M"])
    cpu = offerings[offerings["gpu"] == "cpu"]
    workload = bucket_workload([(100, 50, 1000), (1000, 200, 100)])
    # a synthetic profile: every layer 1 ms per decode step, 0.01 ms per prompt token; head 2 ms
    flat = {str(b): {"1": {"128": 1.0, "512": 1.0}, "64": {"128": 1.0, "512": 1.0}} for b in (32, 16, 8, 4)}
    profile = {"device": "cpu", "model": "SmolLM2-135M", "threads": 2, "layers": 30, "layer_decode_ms": flat,
               "layer_prefill_ms_per_token": {str(b): 0.01 for b in (32, 16, 8, 4)}, "head_decode_ms": {"1": 2.0, "64": 2.0}}
    roofline = build_candidates(cpu, gpus, model, workload, 0.0)
    measured = build_candidates(cpu, gpus, model, workload, 0.0, cpu_profile=profile)
    for c in measured:
        vcpus = int(cpu.loc[c.offering, "vcpus"])
        expected = [class_requests_per_s(profile, [c.bits] * 30, k.input_tokens, k.output_tokens) / 2 * vcpus for k in workload.classes]
        assert list(c.requests_per_s) == pytest.approx(expected)
    # hand check of one class: batch 64, 100 prompt tokens, 50 steps at 30 x 1 + 2 ms
    one = class_requests_per_s(profile, [8] * 30, 100, 50)
    assert one == pytest.approx(64 / ((64 * 100 * 30 * 0.01 + 50 * 32) / 1000))
    assert [c.requests_per_s for c in roofline] != [c.requests_per_s for c in measured]
    # a profile of another model leaves the roofline in place
    other = build_candidates(cpu, gpus, model, workload, 0.0, cpu_profile={**profile, "model": "Llama-3.1-8B"})
    assert [c.requests_per_s for c in other] == [c.requests_per_s for c in roofline]
