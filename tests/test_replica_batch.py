"""A plan's replica runs the batch its throughput was costed at, for every kind of candidate (whole-model, partitioned,
CPU–GPU hybrid): a worker keeps `stages × decode_micro_batch` sequences in flight (workers/engine.py), and that is the
batch the cost model timed every class at. Before, whole-model replicas were handed a batch of 1."""

from __future__ import annotations

import pytest

from catalog.load import load_gpus, load_models, load_offerings
from solver.candidates import Candidate, build_candidates
from solver.costmodel import Device, ModelShape, class_throughput
from solver.hybrid_candidates import hybrid_candidates
from solver.hybrid_costs import PLACEMENTS, host_of
from solver.hybrid_partition import best_batch_rate
from solver.partition import partition_throughput
from solver.partition_candidates import instance_layouts, stage_link_gbps
from solver.quality import model_layer_loss
from solver.workload import bucket_workload

MODELS = load_models().set_index("model", drop=False)
SPECS = load_gpus().set_index("gpu", drop=False)
OFFERINGS = load_offerings()
US_EAST = OFFERINGS[(OFFERINGS.cloud == "aws") & (OFFERINGS.region == "us-east-1")]
WORKLOAD = bucket_workload([(120, 80, 150_000), (300, 150, 50_000), (3000, 600, 5_000)])


def in_flight(c: Candidate) -> int:
    """Sequences a worker of this candidate's replica keeps in flight: decode_micro_batch per pipeline stage."""
    return max(1, len(c.stages)) * c.decode_micro_batch


def test_whole_model_replicas_run_the_batch_every_class_was_costed_at() -> None:
    model = ModelShape.from_row(MODELS.loc["Llama-3.1-8B"])
    candidates = build_candidates(US_EAST, load_gpus(), model, WORKLOAD, spot=False)
    assert candidates
    for c in candidates:
        row = US_EAST.loc[c.offering]
        device = Device.from_catalog(SPECS.loc[c.gpu], c.tp, int(row["vcpus"]), float(row["host_memory_gib"]))
        batch = in_flight(c)
        for k, cls in enumerate(WORKLOAD.classes):
            shape = (c.bits,) * model.layers
            alone = class_throughput(model, device, shape, cls.input_tokens, cls.output_tokens, numerics=c.numerics)
            assert alone.batch >= batch or alone.batch == 0  # no class is costed at more than fits it
            at_batch = class_throughput(model, device, shape, cls.input_tokens, cls.output_tokens, batch, c.numerics)
            assert c.requests_per_s[k] == pytest.approx(at_batch.requests_per_s * c.replicas, rel=1e-12)
            assert at_batch.batch in (0, batch)  # costed at exactly the replica's batch, or not served
        if c.gpu != "cpu":
            assert batch > 1


def test_partitioned_replicas_run_the_batch_every_class_was_costed_at() -> None:
    model = ModelShape.from_row(MODELS.loc["Llama-3.1-70B"])
    loss = model_layer_loss(model.name, model.layers)
    layouts = instance_layouts(model, SPECS.loc["L40S"], 4, WORKLOAD, 0.99, loss, (16, 8, 4), None)
    assert layouts
    for tp, pp, part, rates in layouts:
        devices = [(Device.from_catalog(SPECS.loc["L40S"], tp), stage_link_gbps(SPECS.loc["L40S"]))] * pp
        batch = pp * part.decode_micro_batch  # the candidate's replica: pp stages, part.decode_micro_batch each
        assert batch == part.batch
        for rate, cls in zip(rates, WORKLOAD.classes):
            assert partition_throughput(model, devices, part, cls.input_tokens, cls.output_tokens, (batch,)) == \
                ((rate, batch) if rate else (0.0, 0))


def test_hybrid_replicas_run_the_batch_every_class_was_costed_at() -> None:
    model = ModelShape.from_row(MODELS.loc["Qwen2.5-14B"])
    t4_and_cpu = US_EAST[US_EAST.instance_type.isin(["g4dn.xlarge", "g4dn.4xlarge", "m7i.8xlarge"])]
    uniform = build_candidates(t4_and_cpu, load_gpus(), model, WORKLOAD, 0.99)
    hybrids = hybrid_candidates(t4_and_cpu, SPECS, model, WORKLOAD, 0.99, False, (16, 8, 4), uniform)
    assert hybrids
    for c in hybrids:
        row = t4_and_cpu.loc[c.offering]
        host = host_of(SPECS.loc["cpu"], int(row["vcpus"]) // c.gpus_per_instance,
                       float(row["host_memory_gib"]) / c.gpus_per_instance, float(SPECS.loc[c.gpu]["pcie_gbps"]))
        key = {modes: name for name, modes in PLACEMENTS.items()}
        placed = {layer: key[(prefill, decode)] for layer, prefill, decode in c.host_layers}
        layer_bits = c.stages[0][2]
        batch = in_flight(c)
        for k, cls in enumerate(WORKLOAD.classes):
            rate = best_batch_rate(model, Device.from_catalog(SPECS.loc[c.gpu], 1), host, layer_bits,
                                   tuple(placed.get(layer, "gpu") for layer in range(model.layers)),
                                   c.prefill_micro_batch, cls.input_tokens, cls.output_tokens, (batch,))
            expected = 0.0 if rate is None else rate.requests_per_s * c.replicas
            assert c.requests_per_s[k] == pytest.approx(expected, rel=1e-12)
