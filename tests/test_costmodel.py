"""Cost model and workload classes: architecture arithmetic, rooflines, memory limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalog.load import load_gpus, load_models
from costserve.jobs.reader import read_jobs
from solver.candidates import build_candidates
from solver.costmodel import (
    DECODE_BANDWIDTH_EFFICIENCY,
    PREFILL_EFFICIENCY,
    Device,
    ModelShape,
    class_throughput,
    decode_step_seconds,
    max_batch,
    prefill_seconds,
    weight_bytes,
)
from solver.quality import predicted_quality
from solver.workload import WorkloadFileError, bucket_workload, load_workload_json, workload_from_jobs
from tests.conftest import EXAMPLES

MODELS = load_models().set_index("model", drop=False)
GPUS = load_gpus().set_index("gpu", drop=False)


def shape(name: str) -> ModelShape:
    return ModelShape.from_row(MODELS.loc[name])


def device(gpu: str, count: int = 1) -> Device:
    return Device.from_catalog(GPUS.loc[gpu], count)


@pytest.mark.parametrize("name", list(MODELS.index))
def test_parameter_count_matches_catalog(name: str) -> None:
    m = shape(name)
    total = m.layers * m.layer_params() + m.embedding_params()
    assert total / 1e9 == pytest.approx(MODELS.loc[name, "params_b"], rel=0.03)


def test_quantized_weights_take_fewer_bytes() -> None:
    m = shape("Llama-3.1-8B")
    w16, w8, w4 = (weight_bytes(m, (b,) * m.layers) for b in (16, 8, 4))
    assert w16 > w8 > w4
    layers16 = w16 - m.embedding_params() * 2
    assert (w8 - m.embedding_params() * 2) == pytest.approx(layers16 / 2)
    with pytest.raises(ValueError, match="bits"):
        weight_bytes(m, (16,) * 3)


def test_memory_limits_decide_what_fits() -> None:
    big = shape("Llama-3.1-70B")
    assert max_batch(big, device("H100"), (16,) * big.layers, 512, 256) == 0  # 141 GB of weights on 80 GB
    assert max_batch(big, device("H100", 4), (16,) * big.layers, 512, 256) > 0
    assert max_batch(big, device("H200"), (8,) * big.layers, 512, 256) > 0
    small = shape("Llama-3.1-8B")
    short = max_batch(small, device("L4"), (16,) * small.layers, 200, 200)
    long = max_batch(small, device("L4"), (16,) * small.layers, 2000, 2000)
    assert 0 < long < short  # longer contexts leave room for fewer sequences


def test_decode_at_batch_one_is_the_weight_read() -> None:
    m, d = shape("Llama-3.1-8B"), device("A100-80GB")
    bits = (16,) * m.layers
    weights = weight_bytes(m, bits)
    kv = 100 * m.kv_bytes_per_token()
    expected = (weights - m.embedding_params() * 2 + m.vocab * m.hidden * 2 + kv) / (2039e9 * DECODE_BANDWIDTH_EFFICIENCY)
    assert decode_step_seconds(m, d, bits, 1, 100) == pytest.approx(expected)


def test_prefill_is_compute_bound_flops() -> None:
    m, d = shape("Llama-3.1-8B"), device("H100")
    bits = (16,) * m.layers
    flops = 2 * m.layers * m.layer_active_params() * 1000 * 4 + 2 * m.layers * m.hidden * 1000**2 * 4 + 2 * m.vocab * m.hidden * 4
    assert prefill_seconds(m, d, bits, 4, 1000) == pytest.approx(flops / (989e12 * PREFILL_EFFICIENCY))


def test_faster_gpu_serves_more_and_memory_bound_decode_gains_from_fewer_bits() -> None:
    m = shape("Llama-3.1-8B")
    assert class_throughput(m, device("H100"), (16,) * 32, 200, 200).requests_per_s > class_throughput(
        m, device("L4"), (16,) * 32, 200, 200).requests_per_s
    l4_16 = class_throughput(m, device("L4"), (16,) * 32, 200, 200)
    l4_8 = class_throughput(m, device("L4"), (8,) * 32, 200, 200)
    assert l4_8.batch > l4_16.batch and l4_8.requests_per_s > l4_16.requests_per_s


def test_quality_indicator_orders_bit_widths() -> None:
    q16, q8, q4 = (predicted_quality((b,) * 30) for b in (16, 8, 4))
    assert q16 == 1.0 and 1.0 > q8 > 0.99 > q4
    assert predicted_quality((16,) * 15 + (4,) * 15) == pytest.approx((q4) ** 0.5)


def test_candidates_respect_quality_target_and_memory() -> None:
    from catalog.load import load_offerings

    offerings = load_offerings()
    work = bucket_workload([(500, 200, 1000)])
    strict = build_candidates(offerings, load_gpus(), shape("Llama-3.1-70B"), work, quality_target=0.99)
    assert strict and {c.bits for c in strict} <= {16, 8}
    big = shape("Llama-3.1-70B")
    for c in strict:  # every replica's memory holds its weights
        per_gpu = GPUS.loc[c.gpu, "memory_gib"] if c.gpu != "cpu" else offerings.loc[c.offering, "host_memory_gib"]
        assert per_gpu * c.tp * 2**30 > weight_bytes(big, (c.bits,) * big.layers)
    assert not any(c.gpu == "T4" and c.tp == 1 for c in strict)
    spot = build_candidates(offerings, load_gpus(), shape("Llama-3.1-8B"), work, spot=True)
    assert any(c.spot for c in spot) and not any(c.spot and "lambda" in c.label for c in spot)


def test_workload_classes_from_jobs_and_json(tmp_path: Path) -> None:
    jobs = [j for j in read_jobs(EXAMPLES / "jobs.jsonl")]
    work = workload_from_jobs(jobs)
    assert work.requests == len(jobs)
    assert work.output_tokens == sum(j.max_tokens for j in jobs)
    assert sum(c.input_tokens_total for c in work.classes) == sum(j.estimated_input_tokens() for j in jobs)
    assert len(work.classes) >= 2 and len({c.name for c in work.classes}) == len(work.classes)

    path = tmp_path / "w.json"
    path.write_text(json.dumps({"classes": [
        {"input_tokens": 100, "output_tokens": 50, "count": 10},
        {"input_tokens": 200, "output_tokens": 100, "count": 30},   # same bucket as the first
        {"input_tokens": 4000, "output_tokens": 1000, "count": 5},
    ]}))
    loaded = load_workload_json(path)
    assert [(c.count, c.input_tokens, c.output_tokens) for c in loaded.classes] == [(40, 175.0, 87.5), (5, 4000.0, 1000.0)]
    path.write_text(json.dumps({"classes": [{"input_tokens": 100, "output_tokens": "50", "count": 1}]}))
    with pytest.raises(WorkloadFileError, match=r"w\.json: classes\[0\]\.output_tokens: "):
        load_workload_json(path)
