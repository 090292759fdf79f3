"""Partition-ILP configurations as fleet candidates: costing, when mixing helps, and plans that use them."""

from __future__ import annotations

import math

import pytest

from catalog.load import load_gpus, load_models, load_offerings
from solver.costmodel import Device, ModelShape
from solver.partition import partition_replica, partition_throughput
from solver.partition_candidates import instance_layouts, mixing_can_help, stage_link_gbps
from solver.planner import plan_batch
from solver.quality import DEFAULT_MODEL_LOSS, model_layer_loss
from solver.workload import bucket_workload


@pytest.fixture(scope="module")
def catalog():  # type: ignore[no-untyped-def]
    return load_gpus(), load_offerings(), load_models().set_index("model", drop=False)


def shape(models, name: str) -> ModelShape:  # type: ignore[no-untyped-def]
    return ModelShape.from_row(models.loc[name])


def test_costing_a_partition_at_its_own_batch_reproduces_the_ilp_latency(catalog) -> None:  # type: ignore[no-untyped-def]
    gpus, _, models = catalog
    model = shape(models, "Llama-3.1-70B")
    specs = gpus.set_index("gpu", drop=False)
    devices = [(Device.from_catalog(specs.loc["L40S"], 2), stage_link_gbps(specs.loc["L40S"]))] * 2
    loss = model_layer_loss(model.name, model.layers)
    part = partition_replica(model, devices, 800, 200, 0.99, loss, batches=(64,))
    assert part is not None and len(part.stages) == 2
    rate, batch = partition_throughput(model, devices, part, 800, 200, batches=(64,))
    assert batch == 64 and rate == pytest.approx(part.requests_per_s, rel=1e-9)
    # longer requests hold more KV cache per sequence: never faster per request
    longer, _ = partition_throughput(model, devices, part, 4000, 800)
    assert 0 < longer < partition_throughput(model, devices, part, 800, 200)[0]


def test_mixing_helps_only_where_the_quality_target_leaves_room() -> None:
    layers = 32
    loss = {b: [v / layers] * layers for b, v in DEFAULT_MODEL_LOSS.items()}
    q8 = math.exp(-DEFAULT_MODEL_LOSS[8])
    assert mixing_can_help(loss, 0.99, (16, 8, 4))  # all-8-bit loses 0.0034; one 4-bit layer adds 0.0066 < 0.01
    assert not mixing_can_help(loss, q8, (16, 8, 4))  # exactly uniform 8-bit: no room for a 4-bit layer
    assert not mixing_can_help(loss, 0.0, (16, 8, 4))  # no target: uniform 4-bit is already allowed
    # 0.999 bans uniform 8-bit (loss 0.0034 > 0.001) but one 8-bit layer costs only 0.0034 / 32
    assert mixing_can_help(loss, 0.999, (16, 8, 4))
    assert not mixing_can_help(loss, 0.99, (16, 8))  # nothing below 8 bits to mix in


def test_layouts_keep_quality_and_cover_every_layer(catalog) -> None:  # type: ignore[no-untyped-def]
    gpus, _, models = catalog
    model = shape(models, "Llama-3.1-8B")
    workload = bucket_workload([(300, 150, 10_000), (3000, 200, 2_000)])
    loss = model_layer_loss(model.name, model.layers)
    specs = gpus.set_index("gpu", drop=False)
    layouts = instance_layouts(model, specs.loc["L4"], 4, workload, 0.99, loss, (16, 8, 4), mix_tp=2)
    assert layouts, "4xL4 must have mixed-bit and pipelined layouts for an 8B model"
    for tp, pp, part, rates in layouts:
        assert tp * pp <= 4 and len(part.stages) == pp and len(rates) == len(workload.classes)
        bounds = [(s[1], s[2]) for s in part.stages]
        assert bounds[0][0] == 0 and bounds[-1][1] == model.layers - 1
        assert all(b[1] + 1 == n[0] for b, n in zip(bounds, bounds[1:]))  # contiguous
        bits = [b for s in part.stages for b in s[3]]
        assert len(bits) == model.layers and math.exp(-sum(loss[b][l] for l, b in enumerate(bits))) >= 0.99 - 1e-9


def test_plans_with_partitioned_configurations_are_never_dearer_and_keep_the_target(catalog) -> None:  # type: ignore[no-untyped-def]
    gpus, offerings, models = catalog
    workload = bucket_workload([(200, 120, 200_000), (2500, 300, 30_000)])
    for quality in (0.99, 0.95):
        plain = plan_batch(workload, models.loc["Llama-3.1-8B"], offerings, gpus, 6 * 3600, quality_target=quality,
                           with_baselines=False, partitioned=False)
        full = plan_batch(workload, models.loc["Llama-3.1-8B"], offerings, gpus, 6 * 3600, quality_target=quality,
                          with_baselines=False)
        assert full.cost <= plain.cost * (1 + 1e-6)  # the plain candidates are a subset
        assert full.quality >= quality - 1e-9
        for g in full.groups:
            assert sum(len(s.bits) for s in g.replica.stages) == 32


def test_memory_bound_t4_gets_a_mixed_bit_replica_that_beats_uniform_8bit(catalog) -> None:  # type: ignore[no-untyped-def]
    # 8B on a 16 GB T4: at 8 bits the KV cache, not compute, limits the batch, so the ILP's one
    # 4-bit layer (within quality 0.99) buys batch and the fleet MILP takes it
    gpus, offerings, models = catalog
    t4 = offerings[offerings["instance_type"] == "Standard_NC4as_T4_v3"]
    workload = bucket_workload([(120, 80, 150_000), (300, 150, 50_000)])
    args = (workload, models.loc["Llama-3.1-8B"], t4, gpus, 12 * 3600)
    plain = plan_batch(*args, quality_target=0.99, spot=True, with_baselines=False, partitioned=False)
    mixed = plan_batch(*args, quality_target=0.99, spot=True)
    assert {b for g in plain.groups for b in g.replica.bits} == {8}
    assert all(len(set(g.replica.bits)) > 1 for g in mixed.groups) and mixed.quality >= 0.99
    assert mixed.cost < plain.cost * 0.99
    assert "[0-31 8b x31 + 4b x1]" in mixed.groups[0].replica.summary()
    uniform_quant = next(b for b in mixed.baselines if b.name == "single-type-best-precision")
    assert uniform_quant.cost == pytest.approx(plain.cost, rel=1e-6)  # the baseline cannot use mixed bits
