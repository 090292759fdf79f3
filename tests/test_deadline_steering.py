"""The deadline is a promise (issue 36): the run steers to it. No sleeps: the driver's steering on a store with a fake
clock, and the deadline simulator (bench/deadline_sim.py, a virtual clock) running the real planner, verdict,
re-planning and budget guard."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from bench.deadline import Scenario, run_once
from bench.deadline_sim import Policy
from bench.spot_traces import Trace
from catalog.load import load_gpus, load_models, load_offerings
from costserve import notices
from costserve.run.steer import DeadlineSteer
from costserve.store.run_state import Event
from costserve.store.runs import RunStore
from solver.costmodel import ModelShape
from solver.fleet import FleetProblem
from solver.margin import solve_at_confidence
from solver.planner import all_candidates, with_spreads
from solver.steering import STEER_CHECK_S, Pace
from solver.workload import bucket_workload

STEERED = Policy("c margin+steer", 0.9, steer=True)
OPEN_LOOP = Policy("b margin", 0.9)


class Said(notices.Quiet):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def say(self, message: str) -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture
def said() -> Said:
    previous, recorder = notices._installed[0], Said()
    notices.install(recorder)
    yield recorder
    notices.install(previous)


def _store(tmp_path: Path) -> RunStore:
    jobs = tmp_path / "j.jsonl"
    jobs.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    return RunStore.create(jobs, 1)


def test_a_run_that_cannot_meet_its_deadline_says_so_once_early_with_the_projected_miss(tmp_path: Path,
                                                                                       said: Said) -> None:
    store = _store(tmp_path)
    start = store.created()
    steer = DeadlineSteer(store, deadline_at=start + 3600, z=1.28)  # the local backend: it cannot add capacity
    # 10 minutes in, 1,000 jobs done at 1 job/s and 10,000 left: 10,000 s more at best, the deadline is 50 minutes away
    for minute in range(10, 20):
        steer.check([Pace("run", 10_000 - 60 * (minute - 10), 1.0)], start + 60 * minute)
    (line,) = said.lines  # once, not every minute
    miss = re.search(r"the deadline will be missed by about (\d+)h(\d+)m", line)
    assert miss, line
    # at the cautious rate (1 job/s × e^(−1.28·0.05)) the 10,000 jobs end ~10,660 s after minute 10: ~2h07m late
    assert 2 * 3600 <= int(miss.group(1)) * 3600 + int(miss.group(2)) * 60 <= 2 * 3600 + 15 * 60
    assert "cannot add capacity" in line and "\n" not in line
    assert store.events(Event.DEADLINE_MISS) == [line]


def test_late_jobs_are_handed_to_added_capacity_and_the_decision_recorded(tmp_path: Path, said: Said) -> None:
    store = _store(tmp_path)
    start = store.created()
    asked: list[dict[str, float]] = []

    def add(late: dict[str, float], why: str, paces: list[Pace]) -> str:
        asked.append(late)
        return "added 1x aws/us-east-1/g6e.xlarge for 2,100 job(s), planned $1.10"

    steer = DeadlineSteer(store, deadline_at=start + 3600, z=1.28, add=add)
    steer.check([Pace("g0", 1000, 1.0), Pace("g1", 5000, 1.0)], start + 600)  # g1: 3,000 s of work in 3,000 s left
    assert list(asked[0]) == ["g1"] and 2_000 < asked[0]["g1"] < 2_300  # what its cautious rate cannot finish
    steer.check([Pace("g1", 5000, 1.0)], start + 600 + STEER_CHECK_S / 2)  # not again before STEER_CHECK_S
    assert len(asked) == 1
    (event,) = store.events(Event.STEERED)
    assert "g1 1.00 jobs/s, 5,000 left" in event and "added 1x aws/us-east-1/g6e.xlarge" in event


def _scenario(model: str, hours: float, budget_times: float) -> Scenario:
    """A simulated scenario of issue 36's 500,000 jobs on on-demand offerings, its budget a multiple of the plan made on
    the deadline."""
    gpus, offerings, models = load_gpus(), load_offerings(), load_models().set_index("model", drop=False)
    workload = bucket_workload([(1000, 300, 200_000), (150, 100, 300_000)])
    shape = ModelShape.from_row(models.loc[model])
    candidates = with_spreads(all_candidates(offerings, gpus, shape, workload, 0.99, False, partitioned=False), set(), False)
    base = FleetProblem(candidates, workload, hours * 3600, {int(i): int(a) for i, a in offerings["availability"].items()})
    open_loop, _, look = solve_at_confidence(base, None)
    problem = base.with_(budget=budget_times * open_loop.cost)
    margin, _, stated = solve_at_confidence(problem, 0.9)
    return Scenario(model, problem, {STEERED.name: (margin, stated.p_meet), OPEN_LOOP.name: (margin, stated.p_meet)})


def _speeds(s: Scenario, factor: float) -> dict[str, float]:
    return {c.rate_source: factor for c in s.problem.candidates}


def test_a_group_at_half_its_planned_rate_gets_capacity_added_and_the_run_meets_its_deadline() -> None:
    s = _scenario("Llama-3.1-8B", 2, budget_times=3.0)  # half the rate costs twice the work: the budget allows it
    slow = run_once(s, STEERED, _speeds(s, 0.5), {}, seed=1)
    assert slow.steered >= 1 and slow.met, slow
    assert slow.cost <= s.problem.budget
    open_loop = run_once(s, OPEN_LOOP, _speeds(s, 0.5), {}, seed=1)  # the same plan, not steered
    assert not open_loop.met and open_loop.steered == 0


def test_steering_never_spends_past_the_budget() -> None:
    s = _scenario("Llama-3.1-8B", 2, budget_times=1.6)  # room for the margin, not for twice the work
    for speed in (0.3, 0.5, 0.7):
        out = run_once(s, STEERED, _speeds(s, speed), {}, seed=2)
        assert out.cost <= s.problem.budget + 1e-9 and not out.overrun, (speed, out)
    hopeless = run_once(s, STEERED, _speeds(s, 0.3), {}, seed=2)
    assert not hopeless.met and hopeless.warned_miss_at is not None
    assert hopeless.warned_miss_at <= 0.5 * s.problem.deadline_s  # said early, not at the deadline


def test_a_spot_group_lost_with_its_capacity_is_replaced_and_the_loss_is_paid_for() -> None:
    gpus, offerings, models = load_gpus(), load_offerings(), load_models().set_index("model", drop=False)
    workload = bucket_workload([(1000, 300, 40_000), (150, 100, 60_000)])
    shape = ModelShape.from_row(models.loc["Llama-3.1-8B"])
    candidates = with_spreads(all_candidates(offerings, gpus, shape, workload, 0.99, True, partitioned=False), set(), False)
    base = FleetProblem(candidates, workload, 4 * 3600, {int(i): int(a) for i, a in offerings["availability"].items()})
    plan, _, look = solve_at_confidence(base, 0.9)
    spot = sorted({g.candidate.offering for g in plan.groups if g.candidate.spot})
    assert spot, "the cheapest 8B fleet with spot allowed holds spot instances"
    gone = Trace(600.0, (8, 8, 0) + (0,) * 100, "capacity for 20 minutes, then none")  # lost after 20 minutes
    s = Scenario("8B spot", base.with_(budget=3 * plan.cost), {STEERED.name: (plan, look.p_meet)})
    out = run_once(s, STEERED, _speeds(s, 1.0), {o: (gone, 0.0) for o in spot}, seed=3)
    assert out.met, out  # replaced (on-demand or another offering) in time
    assert out.cost > plan.cost  # the lost start-up and the replacement are paid for
    assert not math.isnan(out.cost) and np.isfinite(out.finish_s or math.inf)


def test_the_sky_backend_hands_a_late_groups_last_waiting_shards_to_added_capacity_or_keeps_them() -> None:
    from types import SimpleNamespace

    from costserve.run.shard_window import ShardWindow
    from costserve.run.sky_steer import add_capacity

    handed: list[list[str]] = []
    fits = {"now": False}

    def add(shards: list[str], why: str, windows: dict, measured: object = None) -> str | None:  # GroupReplacer.add
        handed.append(list(shards))
        return "added 1x aws/us-east-1/g6e.xlarge" if fits["now"] else None

    window: ShardWindow[None] = ShardWindow(2, lambda sid: None, [f"s{i}" for i in range(10)])
    window.fill()  # s0, s1 sent; s2..s9 waiting
    backend = SimpleNamespace(replacer=SimpleNamespace(add=add), may_add_capacity=True, windows={"g0": window},
                              spec=SimpleNamespace(request=SimpleNamespace(shard_size=32)))
    assert add_capacity(backend, {"g0": 70.0}, "late") is None  # nothing fits: every shard stays, in order
    assert handed == [["s9", "s8", "s7"]] and list(window.waiting) == [f"s{i}" for i in range(2, 10)]
    fits["now"] = True
    assert add_capacity(backend, {"g0": 70.0}, "late") == "added 1x aws/us-east-1/g6e.xlarge"
    assert list(window.waiting) == [f"s{i}" for i in range(2, 7)] and set(window.sent) == {"s0", "s1"}
    backend.may_add_capacity = False  # the budget guard's projection is over budget: nothing is added
    assert add_capacity(backend, {"g0": 70.0}, "late") is None and len(handed) == 2


def test_a_lost_group_with_no_replacement_that_fits_hands_its_shards_to_the_groups_still_running(tmp_path: Path,
                                                                                                said: Said) -> None:
    from types import SimpleNamespace

    from catalog.load import load_offerings
    from costserve.request import BatchRequest
    from costserve.run.replan import GroupReplacer
    from costserve.run.shard_window import ShardWindow
    from costserve.store.shard_files import write_shard
    from solver.plan import Job

    store = _store(tmp_path)
    for sid in ("a", "b", "c"):
        store.add_shard(sid, "g0", 1)
        write_shard(store.dir, sid, [Job(custom_id=sid, line=1, max_tokens=8, prompt="hi")])
    survivor: ShardWindow[None] = ShardWindow(4, lambda sid: None)
    request = BatchRequest(jobs=tmp_path / "j.jsonl", model="Llama-3.1-70B", deadline_s=60.0)
    replacer = GroupReplacer(store, SimpleNamespace(), SimpleNamespace(), SimpleNamespace(model="Llama-3.1-70B"),
                             load_offerings(), load_gpus(), request, "redis://x", SimpleNamespace(), 60.0, None)
    replacer._replan(["a", "b", "c"], "g0 (1x aws/us-east-1/p5.48xlarge spot) is gone", {"g1": survivor})
    assert list(survivor.waiting) == ["a", "b", "c"]  # a 70B fleet cannot start in 60 s: the survivor takes them
    assert {s.shard_id: s.group for s in store.shards()} == {"a": "g1", "b": "g1", "c": "g1"}
    assert store.events(Event.NO_REPLACEMENT) and any("go to g1" in line for line in said.lines)


def test_the_groups_lost_at_one_check_are_replanned_together(tmp_path: Path, said: Said) -> None:
    import time
    from types import SimpleNamespace

    from costserve.request import BatchRequest
    from costserve.run.replan import GroupReplacer
    from costserve.run.shard_window import ShardWindow
    from costserve.store.shard_files import write_shard
    from deploy.sky_fleet import cluster_name
    from solver.plan import Job

    store = _store(tmp_path)
    windows: dict[str, ShardWindow[None]] = {}
    for queue, shards in (("g0", ["a", "b"]), ("g1", ["c"]), ("g2", [])):
        store.fleet_up(queue, int(queue[1:]), 1, 55.0)
        for sid in shards:
            store.add_shard(sid, queue, 1)
            write_shard(store.dir, sid, [Job(custom_id=sid, line=1, max_tokens=8, prompt="hi")])
        windows[queue] = ShardWindow(4, lambda sid: None, shards)
    p5 = SimpleNamespace(count=1, cloud="aws", region="us-east-1", instance_type="p5.48xlarge", spot=True)
    status = {cluster_name(store.id, "g0"): None, cluster_name(store.id, "g1"): "INIT", cluster_name(store.id, "g2"): "UP"}
    forgotten: list[str] = []
    fleet = SimpleNamespace(statuses=lambda names: {n: status[n] for n in names}, forget=forgotten.append)
    request = BatchRequest(jobs=tmp_path / "j.jsonl", model="Llama-3.1-70B", deadline_s=60.0)
    replacer = GroupReplacer(store, fleet, SimpleNamespace(), SimpleNamespace(model="Llama-3.1-70B", groups=[p5] * 3),
                             load_offerings(), load_gpus(), request, "redis://x", SimpleNamespace(), 60.0, None,
                             last_check=time.monotonic() - 3600)
    replacer.check(windows)  # type: ignore[arg-type]
    assert sorted(forgotten) == sorted([cluster_name(store.id, "g0"), cluster_name(store.id, "g1")])
    assert len(store.events(Event.GROUP_LOST)) == 2
    assert len(store.events(Event.NO_REPLACEMENT)) == 1  # one re-plan for both groups' jobs (none fits 60 s: g2 takes them)
    assert set(windows) == {"g2"} and sorted(windows["g2"].waiting) == ["a", "b", "c"]
    assert any("g0" in line and "g1" in line and "go to g2" in line for line in said.lines)


def test_added_capacity_is_planned_at_the_rate_the_running_hardware_measured() -> None:
    from costserve.run.sky_steer import measured_calibration, planned_jobs_per_s
    from solver.planner import plan_batch

    llama = load_models().set_index("model", drop=False).loc["Llama-3.1-8B"]
    work = bucket_workload([(1000, 300, 20_000), (150, 100, 30_000)])
    plan = plan_batch(work, llama, load_offerings(), load_gpus(), 2 * 3600, None, 0.99, with_baselines=False)
    planned = planned_jobs_per_s(plan.groups[0], plan)
    assert planned > 0
    calibrate = measured_calibration(plan, [Pace("g0", 10_000, planned / 2)])  # g0 runs at half its planned rate
    slower = plan_batch(work, llama, load_offerings(), load_gpus(), 2 * 3600, None, 0.99, with_baselines=False,
                        calibrate=calibrate)
    g = plan.groups[0]
    same = [h for h in slower.groups if (h.gpu, h.replica.summary()) == (g.gpu, g.replica.summary())]
    for h in same:  # that hardware is planned at the measured rate, and says so
        assert h.work_factor == pytest.approx(2.0, rel=1e-6) and "measured in this run" in (h.calibration or "")
        assert all(h.requests_per_s[k] == pytest.approx(r / 2, rel=1e-6) for k, r in g.requests_per_s.items())
    assert slower.cost > plan.cost  # the same jobs at a measured half rate cost more (or take another GPU)


def test_in_the_simulator_an_idle_group_takes_jobs_from_one_still_starting_so_both_finish_together() -> None:
    from bench.deadline_sim import Group, Sim

    s = _scenario("Llama-3.1-8B", 2, budget_times=2.0)
    c = next(c for c in s.problem.candidates if all(r > 0 for r in c.requests_per_s))
    sim = Sim(STEERED, s.problem, _speeds(s, 1.0), {}, np.random.default_rng(0))
    jobs = np.full(len(c.requests_per_s), 200_000.0)
    idle, starting = Group(c, 1, np.zeros_like(jobs), 0.0, 0.0, 1.0), Group(c, 1, jobs, 0.0, 1200.0, 1.0)
    sim.groups, sim.t = [idle, starting], 600.0
    sim._rebalance()  # the real window takes waiting shards from a group that is not up yet, as from any other
    assert idle.left.sum() > starting.left.sum()  # the starting group's 600 s still to come count against it
    assert sim._finish(idle) == pytest.approx(sim._finish(starting), rel=1e-9)
    assert idle.left.sum() + starting.left.sum() == pytest.approx(jobs.sum())
