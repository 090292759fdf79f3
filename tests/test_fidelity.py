"""The cost model held to published offline throughput (catalog/data/measured_throughput.csv, TensorRT-LLM v0.17)."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.load import CatalogError, load_gpus, load_measured_throughput, load_models, shipped_path
from solver.costmodel import BF16, FP8, Device, ModelShape, class_throughput
from solver.fidelity import BOUNDS, WITHIN, fidelity_summary, fidelity_table
from solver.serving_engine import TENSORRT_LLM, VLLM, VLLM_VS_TENSORRT_LLM

MEASURED = load_measured_throughput()


def test_the_reference_is_broad_and_sourced() -> None:
    assert len(MEASURED) >= 30
    assert MEASURED["gpu"].nunique() >= 4
    assert set(MEASURED["precision"]) == {"fp16", "fp8"}
    assert MEASURED["source"].str.contains("TensorRT-LLM").all()


def test_predictions_match_the_published_measurements() -> None:
    table = fidelity_table(MEASURED, load_models(), load_gpus())
    summary = fidelity_summary(table["ratio"])
    worst = table.loc[(table["ratio"] - 1).abs().idxmax()]
    assert summary["within"] >= 0.8, f"only {summary['within']:.0%} of points within {WITHIN}"
    assert summary["bounded"] == 1.0, f"{worst.to_dict()} is outside {BOUNDS}"


def test_fp8_doubles_the_compute_roof_and_halves_the_kv_cache() -> None:
    gpus = load_gpus().set_index("gpu", drop=False)
    model = ModelShape.from_row(load_models().set_index("model", drop=False).loc["Llama-3.1-8B"])
    h100 = Device.from_catalog(gpus.loc["H100"])
    assert h100.effective_flops(FP8) == pytest.approx(2 * h100.effective_flops(BF16), rel=0.01)  # 1979 vs 989 TFLOPS
    assert model.kv_bytes_per_token(FP8.kv_value_bytes()) * 2 == model.kv_bytes_per_token()
    prefill_heavy = [class_throughput(model, h100, (b,) * model.layers, 2048, 128, numerics=n).output_tokens_per_s
                     for b, n in ((16, BF16), (8, FP8))]
    assert 1.5 < prefill_heavy[1] / prefill_heavy[0] < 2.2  # twice the FLOPs, and the FP8 KV cache reads half the bytes
    with pytest.raises(ValueError, match="no FP8"):
        Device.from_catalog(gpus.loc["A100-80GB"]).effective_flops(FP8)


def test_engines_differ_in_memory_rule_and_speed() -> None:
    gpus = load_gpus().set_index("gpu", drop=False)
    model = ModelShape.from_row(load_models().set_index("model", drop=False).loc["Llama-3.1-70B"])
    h100, bits = Device.from_catalog(gpus.loc["H100"]), (8,) * model.layers
    trt = class_throughput(model, h100, bits, 128, 2048, numerics=FP8, engine=TENSORRT_LLM)
    vllm = class_throughput(model, h100, bits, 128, 2048, numerics=FP8, engine=VLLM)
    assert trt.batch > vllm.batch  # 0.95 of what the weights leave, against 0.9 of the whole GPU
    small = ModelShape.from_row(load_models().set_index("model", drop=False).loc["Llama-3.1-8B"])
    same = [class_throughput(small, h100, (8,) * small.layers, 512, 256, batch_cap=64, numerics=FP8, engine=e) for e in (TENSORRT_LLM, VLLM)]
    assert same[1].output_tokens_per_s == pytest.approx(same[0].output_tokens_per_s * VLLM_VS_TENSORRT_LLM)


def test_tensor_parallel_pays_for_its_all_reduces() -> None:
    gpus = load_gpus().set_index("gpu", drop=False)
    model = ModelShape.from_row(load_models().set_index("model", drop=False).loc["Llama-3.1-70B"])
    rates = {(g, n): class_throughput(model, Device.from_catalog(gpus.loc[g], n), (8,) * model.layers, 128, 2048,
                                      numerics=FP8, engine=TENSORRT_LLM).output_tokens_per_s
             for g in ("H100", "L40S") for n in (4, 8)}
    assert rates[("H100", 8)] / rates[("H100", 4)] > 1.3  # NVLink: TP8 gains
    assert rates[("L40S", 8)] / rates[("L40S", 4)] < 1.3  # PCIe: the all-reduces eat the gain


def test_a_point_on_an_unknown_gpu_is_a_one_line_error(tmp_path: Path) -> None:
    text = shipped_path("measured_throughput.csv").read_text().splitlines()
    bad = tmp_path / "m.csv"
    bad.write_text("\n".join([text[0], text[1].replace("H200", "H300", 1)]) + "\n")
    with pytest.raises(CatalogError, match=r"m\.csv:2: gpu: 'H300' is not in gpus\.csv"):
        load_measured_throughput(bad)
