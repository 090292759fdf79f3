"""`costserve submit --backend sky` up to the cloud boundary: `sky` is faked, everything else is real.

The fake `sky.launch` starts a real `costserve worker` process per node of the task, for the
task's queue, with the broker URL it was given as a SkyPilot secret; `sky.down` stops them.
So the test runs the real plan, task YAML, per-group queues with inline shards, results
through Redis's result store, the run store, teardown and the report.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from conftest import REDIS_PASSWORD
from costserve.jobs.assignment import assign_jobs, split_counts
from costserve.store.runs import RunStore, runs_dir
from deploy.skypilot import REDIS_PASSWORD_SECRET, REDIS_PORT, head_task_config
from node_sim import FAKE_SKY, Task, on_this_cpu, persistent_fake_sky, skypilot_api_server

pytestmark = pytest.mark.slow


FakeTask = Task  # the same Task (YAML config + secrets) for the in-process fake


def fake_sky(model: Path, log_dir: Path) -> types.ModuleType:
    from deploy.local import start_worker, stop_worker

    sky = types.ModuleType("sky")
    sky.Task = FakeTask  # type: ignore[attr-defined]
    sky.launched, sky.downed, sky.nodes = [], [], {}  # type: ignore[attr-defined]

    def launch(task: FakeTask, cluster_name: str, idle_minutes_to_autostop: int, down: bool) -> tuple[str, str]:
        assert idle_minutes_to_autostop > 0 and down  # the autostop guard is always on
        sky.launched.append((cluster_name, task.config, dict(task.secrets)))  # type: ignore[attr-defined]
        replica = log_dir / f"{cluster_name}-replica.json"  # a GPU group's replica on this CPU (tests/node_sim.py)
        replica.write_text(on_this_cpu(Path(task.config["file_mounts"]["~/costserve/replica.json"]).read_text()))
        sky.nodes[cluster_name] = [  # type: ignore[attr-defined]
            start_worker(log_dir, task.config["envs"]["COSTSERVE_QUEUE"], task.secrets["COSTSERVE_BROKER"], replica, str(model),
                         log_dir / f"{cluster_name}.log")
            for _ in range(task.config["num_nodes"])
        ]
        return ("launch", cluster_name)

    def down(name: str) -> tuple[str, str]:
        for proc in sky.nodes.pop(name, []):  # type: ignore[attr-defined]
            stop_worker(proc)
        sky.downed.append(name)  # type: ignore[attr-defined]
        return ("down", name)

    def status(cluster_names: list[str]) -> list[dict[str, str]]:
        return [{"name": n, "status": "UP"} for n in cluster_names if n in sky.nodes]  # type: ignore[attr-defined]

    def preempt(name: str) -> None:
        """The cloud takes the instances back: the nodes die and the cluster disappears from `sky status`."""
        for proc in sky.nodes.pop(name, []):  # type: ignore[attr-defined]
            stop_worker(proc, timeout_s=0.1)

    sky.launch, sky.down, sky.status, sky.preempt = launch, down, status, preempt  # type: ignore[attr-defined]
    sky.get = lambda request: request  # type: ignore[attr-defined]
    sky.server = skypilot_api_server()  # type: ignore[attr-defined]
    return sky


def test_sky_backend_runs_every_job_once_and_tears_the_fleet_down(cli, tmp_path: Path, smollm2_dir: Path, redis_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    sky = fake_sky(smollm2_dir, tmp_path)  # the "nodes" run the planned model, SmolLM2-135M
    monkeypatch.setitem(sys.modules, "sky", sky)
    jobs = tmp_path / "jobs.jsonl"
    ids = [f"s{i:02d}" for i in range(9)]
    jobs.write_text("".join(json.dumps({"id": c, "prompt": f"say {i}", "max_tokens": 2 + i % 3, "temperature": 0}) + "\n"
                            for i, c in enumerate(ids)))
    out = tmp_path / "results.jsonl"
    refused = cli.invoke(app, ["submit", str(jobs), "--backend", "sky", "--model", "SmolLM2-135M", "--broker", redis_url])
    assert refused.exit_code == 2 and "pass --yes" in refused.output and not sky.launched
    result = cli.invoke(app, ["submit", str(jobs), "--backend", "sky", "--model", "SmolLM2-135M", "--deadline", "2h",
                              "--broker", redis_url, "--out", str(out), "--shard-size", "2", "--yes"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == ids  # each once, in input order
    (run_dir,) = runs_dir().iterdir()
    store = RunStore.open(run_dir.name)
    plan = store.plan()
    assert plan is not None and len(sky.launched) == len(plan.groups) >= 1
    for i, (name, config, secrets) in enumerate(sky.launched):
        assert name.endswith(f"-g{i}") and config["num_nodes"] == plan.groups[i].count
        assert secrets == {"COSTSERVE_BROKER": redis_url} and config["secrets"] == {"COSTSERVE_BROKER": None}
    assert sorted(sky.downed) == sorted(name for name, _, _ in sky.launched) and not sky.nodes  # all torn down
    assert all(state == "done" for *_, state in store.shards()) and len(store.shards()) == 5
    assert all(down is not None for *_, down in store.fleet())
    assert (run_dir / "report.html").is_file()
    # every group calibrates the next plans of its hardware and replica (costserve/run/calibrate.py)
    from costserve.planning.batch import cloud_calibration
    from costserve.store.calibration import calibration_rows
    from solver.plan import hardware_signature

    rows = {row["run"]: row for row in calibration_rows()}
    lookup = cloud_calibration(plan.model)
    assert lookup is not None
    for i, g in enumerate(plan.groups):
        row = rows[f"{store.id}/g{i}"]
        hardware = hardware_signature(g.gpu, g.gpus_per_instance, g.instance_type)
        assert (row["machine"], row["replica"]) == (hardware, g.replica.summary())
        assert row["start-up s"] > 0 and row["work factor"] > 0 and 0 < row["output share"] <= 1
        found = lookup(hardware, g.replica.summary())
        assert found is not None and found[2].startswith("calibrated from 1 run")
    for path in run_dir.rglob("*"):  # the broker password is in no file the run wrote
        if path.is_file():
            assert REDIS_PASSWORD.encode() not in path.read_bytes(), path
    assert REDIS_PASSWORD not in result.output


def _short_then_long(ids: list[str]) -> str:
    """Job lines: the first 4 short, the rest long counting prompts (greedy continues them to max_tokens). A worker runs
    every shard it holds at once, so a fault struck after the first results must find long jobs still running."""
    return "".join(json.dumps({"id": c, "prompt": ", ".join(str(i + k) for k in range(6)) + ",",
                               "max_tokens": 2 if i < 4 else 64, "temperature": 0}) + "\n" for i, c in enumerate(ids))


def test_a_preempted_group_is_replanned_and_replaced(cli, tmp_path: Path, smollm2_dir: Path, redis_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    import costserve.run.replan
    from costserve.cli import app

    monkeypatch.setattr(costserve.run.replan, "PREEMPTION_CHECK_S", 0.5)
    sky = fake_sky(smollm2_dir, tmp_path)
    monkeypatch.setitem(sys.modules, "sky", sky)
    jobs = tmp_path / "jobs.jsonl"
    ids = [f"p{i:02d}" for i in range(24)]
    jobs.write_text(_short_then_long(ids))
    out = tmp_path / "results.jsonl"

    def preempt_after_first_results() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            runs = list(runs_dir().iterdir()) if runs_dir().is_dir() else []
            if runs and RunStore(runs[0]).results_done() >= 2:
                sky.preempt(sky.launched[0][0])
                return
            time.sleep(0.1)

    killer = threading.Thread(target=preempt_after_first_results, daemon=True)
    killer.start()
    result = cli.invoke(app, ["submit", str(jobs), "--backend", "sky", "--model", "SmolLM2-135M", "--deadline", "2h", "--spot",
                              "--broker", redis_url, "--out", str(out), "--shard-size", "2", "--yes"])
    killer.join(5)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == ids  # none lost, none duplicated
    (run_dir,) = runs_dir().iterdir()
    store = RunStore.open(run_dir.name)
    kinds = [k for (k,) in store.db.execute("SELECT kind FROM events")]
    assert "group lost" in kinds and "replaced" in kinds and "is gone" in result.output and "launching replacement g1" in result.output
    plan = store.plan()
    assert plan is not None and len(plan.groups) >= 2 and len(sky.launched) == len(plan.groups)
    queues = {q for q, *_ in store.fleet()}
    assert {"g0", "g1"} <= queues and all(down is not None for *_, down in store.fleet())
    assert all(state == "done" for *_, state in store.shards())
    assert any(q != "g0" for _, q, _, _ in store.shards())  # the lost group's shards moved to the replacement
    assert not sky.nodes  # everything torn down


def test_head_node_opens_only_the_redis_port_and_takes_its_password_as_a_secret() -> None:
    config = head_task_config("aws", "us-east-1")
    assert config["resources"]["ports"] == [REDIS_PORT] and config["secrets"] == {REDIS_PASSWORD_SECRET: None}
    assert f"--requirepass \"${REDIS_PASSWORD_SECRET}\"" in config["run"] and "--protected-mode yes" in config["run"]
    assert config["resources"]["autostop"]["down"] is True


def test_jobs_follow_the_plans_class_shares() -> None:
    from solver.plan import FleetGroupPlan, Plan, Replica, Stage, WorkloadClassPlan
    from solver.plan import Job

    assert split_counts(10, [0.2, 0.8]) == [2, 8] and split_counts(3, [0.5, 0.5]) in ([2, 1], [1, 2])
    assert sum(split_counts(7, [0.2, 0.3, 0.5])) == 7

    short = [Job(custom_id=f"a{i}", line=2 * i + 1, max_tokens=16, prompt="hi") for i in range(8)]
    long = [Job(custom_id=f"b{i}", line=2 * i + 2, max_tokens=1000, prompt="hi") for i in range(4)]
    replica = Replica(tp=1, stages=[Stage(device="cpu", first_layer=0, last_layer=0, bits=[16])], prefill_micro_batch=1,
                      decode_micro_batch=1)

    def group(shares: dict[str, float]) -> FleetGroupPlan:
        return FleetGroupPlan(cloud="aws", region="r", instance_type="t", gpu="L4", gpus_per_instance=1, spot=False,
                              price_per_hour=1.0, count=1, replicas=1, replica=replica, quality=1.0, class_shares=shares,
                              requests_per_s={}, finish_s=1.0)

    plan = Plan(model="m", deadline_s=1, budget=None, quality_target=0, spot_allowed=False,
                workload=[WorkloadClassPlan(name="in 0-256 / out 0-128", count=8, input_tokens=1, output_tokens=16),
                          WorkloadClassPlan(name="in 0-256 / out 512+", count=4, input_tokens=1, output_tokens=1000)],
                groups=[group({"in 0-256 / out 0-128": 0.25, "in 0-256 / out 512+": 1.0}), group({"in 0-256 / out 0-128": 0.75})],
                cost=1, makespan_s=1, quality=1)
    first, second = assign_jobs(short + long, plan)
    assert [j.custom_id for j in first] == ["a0", "b0", "a1", "b1", "b2", "b3"]  # 2 of 8 short, all long, in input order
    assert [j.custom_id for j in second] == [f"a{i}" for i in range(2, 8)]


def test_a_killed_sky_driver_is_resumed_on_a_new_fleet(cli, tmp_path: Path, smollm2_dir: Path, redis_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL `submit --backend sky` mid-run: its clusters keep running (and billing); `resume` downs them,
    re-plans the jobs without results, launches a new group and completes every job exactly once."""
    import os
    import signal
    import subprocess
    import time

    from costserve.cli import app

    state = tmp_path / "sky-state"
    state.mkdir()
    monkeypatch.setenv("FAKE_SKY_DIR", str(state))
    monkeypatch.setenv("FAKE_SKY_MODEL", str(smollm2_dir))
    jobs = tmp_path / "jobs.jsonl"
    ids = [f"k{i:02d}" for i in range(24)]
    jobs.write_text(_short_then_long(ids))
    out = tmp_path / "results.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKE_SKY), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-m", "costserve.cli", "submit", str(jobs), "--backend", "sky", "--model",
                               "SmolLM2-135M", "--deadline", "2h", "--broker", redis_url, "--out", str(out), "--shard-size", "2",
                               "--yes"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not (runs_dir().is_dir() and any(RunStore(d).results_done() >= 2 for d in runs_dir().iterdir()
                                                if (d / "run.sqlite").is_file())):
            assert driver.poll() is None and time.monotonic() < deadline, driver.stdout.read().decode() if driver.stdout else ""
            time.sleep(0.2)
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
        (run_dir,) = runs_dir().iterdir()
        store = RunStore.open(run_dir.name)
        left = sorted(p.stem for p in state.glob("*.json"))
        assert left and all(name.endswith("-g0") for name in left)  # the dead driver's cluster is still up
        old_pids = [pid for p in state.glob("*.json") for pid in json.loads(p.read_text())["pids"]]
        assert store.results_done() < len(ids)

        monkeypatch.setitem(sys.modules, "sky", persistent_fake_sky())
        result = cli.invoke(app, ["resume", store.id, "--broker", redis_url])
        assert result.exit_code == 0, result.output
        assert "stopped 1 leftover cluster" in result.output and "re-planned" in result.output
        assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == ids  # none lost, none twice
        downed = (state / "downed.log").read_text().split()
        assert left[0] in downed
        assert not any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
                       for pid in old_pids)
        launched = (state / "launched.log").read_text().split()
        assert launched[0].endswith("-g0") and launched[-1].endswith("-g1")  # the new fleet's queues follow the old
        assert not list(state.glob("*.json"))  # and it was torn down at the end
        periods = store.fleet()
        assert {q for q, *_ in periods} == {"g0", "g1"} and all(down is not None for *_, down in periods)
        plan = store.plan()
        assert plan is not None and len(plan.groups) == 2
        assert any(q == "g1" for _, q, _, _ in store.shards())
    finally:
        if driver.poll() is None:
            driver.kill()
        for p in state.glob("*.json"):
            for pid in json.loads(p.read_text())["pids"]:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
