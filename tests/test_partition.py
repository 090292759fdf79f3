"""Partition ILP: a hand-computed 4-layer, 2-device case, brute force on small cases, the roofline driver."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from catalog.load import load_gpus, load_models
from solver.costmodel import Device, ModelShape
from solver.partition import StageCosts, build_partition_model, partition_replica, solve_partition_model
from solver.quality import DEFAULT_MODEL_LOSS


def stage(name: str, capacity: float, mem: dict, t: dict, fixed: float = 0.0) -> StageCosts:
    return StageCosts(name, capacity, fixed, mem, {b: 0.0 for b in mem}, t)


def test_four_layers_two_devices_hand_computed() -> None:
    # fast device: 20 bytes, 1 s per layer; slow device: 40 bytes, 3 s. A layer is 10 bytes at
    # 16 bits, 5 at 8 bits; each 8-bit layer loses 1 quality unit. Decode only, one micro-batch.
    fast = stage("fast", 20, {16: 10, 8: 5}, {16: 1.0, 8: 1.0})
    slow = stage("slow", 40, {16: 10, 8: 5}, {16: 3.0, 8: 3.0})
    loss = {16: [0.0] * 4, 8: [1.0] * 4}
    # budget 2: two 8-bit layers + one 16-bit layer fill the fast device (20 bytes): 3 x 1 s + 3 s = 6 s
    two = solve_partition_model(build_partition_model(4, [fast, slow], loss, 1, 1, 1, quality_budget=2.0), [fast, slow])
    assert two.latency_s == pytest.approx(6.0)
    assert [(s[0], s[1], s[2]) for s in two.stages] == [("fast", 0, 2), ("slow", 3, 3)]
    assert sorted(two.stages[0][3]) == [8, 8, 16] and two.stages[1][3] == (16,) and two.quality_loss == pytest.approx(2.0)
    # budget 1: only 5 + 10 bytes fit the fast device, two layers: 2 x 1 s + 2 x 3 s = 8 s
    one = solve_partition_model(build_partition_model(4, [fast, slow], loss, 1, 1, 1, quality_budget=1.0), [fast, slow])
    assert one.latency_s == pytest.approx(8.0) and [(s[1], s[2]) for s in one.stages] == [(0, 1), (2, 3)]
    # three micro-batches: Σ T + 2 max T. Split 2/2 at 16 bits: 2 + 6 + 2·6 = 20; 3/1 (budget 2): 3 + 3 + 2·3 = 12
    piped = solve_partition_model(build_partition_model(4, [fast, slow], loss, 1, 3, 1, quality_budget=2.0), [fast, slow])
    assert piped.latency_s == pytest.approx(12.0)


def brute(layers: int, stages: list[StageCosts], loss: dict, n_pre: int, n_dec: int, steps: int, budget: float) -> float | None:
    best = None
    bits = sorted(stages[0].layer_bytes)
    for cuts in itertools.combinations(range(1, layers), len(stages) - 1):
        bounds = (0, *cuts, layers)
        for assign in itertools.product(bits, repeat=layers):
            if sum(loss[b][l] for l, b in enumerate(assign)) > budget + 1e-9:
                continue
            ok, pre, dec = True, [], []
            for d, s in enumerate(stages):
                ls = range(bounds[d], bounds[d + 1])
                if s.fixed + sum(s.layer_bytes[assign[l]] for l in ls) > s.capacity + 1e-9:
                    ok = False
                    break
                last = d == len(stages) - 1
                pre.append(sum(s.prefill_s[assign[l]] for l in ls) + (0 if last else s.send_prefill_s))
                dec.append(sum(s.decode_s[assign[l]] for l in ls) + (0 if last else s.send_decode_s))
            if ok:
                total = sum(pre) + (n_pre - 1) * max(pre) + steps * (sum(dec) + (n_dec - 1) * max(dec))
                best = total if best is None else min(best, total)
    return best


@pytest.mark.parametrize("seed", range(25))
def test_partition_equals_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    layers, n_dev = rng.randint(3, 6), rng.randint(1, 3)
    stages = []
    for d in range(n_dev):
        speed = rng.uniform(0.5, 3.0)
        stages.append(StageCosts(
            f"d{d}", rng.uniform(15, 60), rng.uniform(0, 5), {16: 10.0, 8: 5.5, 4: 3.0},
            {b: speed * f * rng.uniform(0.9, 1.1) for b, f in ((16, 1.0), (8, 1.05), (4, 1.1))},
            {b: speed * f for b, f in ((16, 1.0), (8, 0.6), (4, 0.4))},
            rng.uniform(0, 0.5), rng.uniform(0, 0.2)))
    loss = {16: [0.0] * layers, 8: [rng.uniform(0, 0.3) for _ in range(layers)], 4: [rng.uniform(0.2, 1.0) for _ in range(layers)]}
    n_pre, n_dec, steps, budget = rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 5), rng.uniform(0, 2)
    expected = brute(layers, stages, loss, n_pre, n_dec, steps, budget)
    got = solve_partition_model(build_partition_model(layers, stages, loss, n_pre, n_dec, steps, budget), stages)
    if expected is None:
        assert got is None
    else:
        assert got is not None and got.latency_s == pytest.approx(expected, rel=1e-6)


def test_roofline_partition_fits_a_big_model_across_mixed_gpus() -> None:
    gpus = load_gpus().set_index("gpu", drop=False)
    model = ModelShape.from_row(load_models().set_index("model", drop=False).loc["Llama-3.1-70B"])
    losses = {b: [DEFAULT_MODEL_LOSS[b] / model.layers] * model.layers for b in (16, 8, 4)}
    devices = [(Device.from_catalog(gpus.loc["A100-80GB"]), 32.0), (Device.from_catalog(gpus.loc["L40S"]), 32.0)]
    part = partition_replica(model, devices, 500, 200, 0.99, losses, batches=(16,))
    assert part is not None and part.requests_per_s > 0
    assert {s[0] for s in part.stages} == {"A100-80GB", "L40S"}
    assert part.stages[0][1] == 0 and part.stages[-1][2] == model.layers - 1
    assert sum(s[2] - s[1] + 1 for s in part.stages) == model.layers
    assert math.exp(-part.quality_loss) >= 0.99 - 1e-9
    # 70B does not fit one L40S at any quality the target allows
    assert partition_replica(model, devices[1:], 500, 200, 0.99, losses, batches=(16,)) is None
