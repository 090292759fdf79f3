"""A group's launch the cloud refuses (no capacity, a quota): re-planned without it, or a resumable stop.

`sky` is faked at the cloud boundary (tests/test_sky_launch.py: each "node" is a real worker); its
`launch` raises SkyPilot's own exceptions for the clusters chosen here. Everything else is real.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from costserve.cli import app
from costserve.errors import StopReason
from costserve.store.run_state import Event, RunState
from costserve.store.runs import RunStore, runs_dir
from test_sky_launch import fake_sky


def _no_capacity() -> Exception:
    from sky.exceptions import ResourcesUnavailableError

    return ResourcesUnavailableError("Failed to acquire resources in all zones in us-east-1",
                                      failover_history=[RuntimeError("InsufficientInstanceCapacity")])


def refusing(sky, refuse) -> None:  # type: ignore[no-untyped-def]
    """Make `sky.launch` raise `_no_capacity()` for each cluster `refuse(name)` picks."""
    launch = sky.launch

    def maybe(task, cluster_name: str, **kwargs):  # type: ignore[no-untyped-def]
        if refuse(cluster_name):
            sky.refused.append((cluster_name, task.config["resources"]))
            raise _no_capacity()
        return launch(task, cluster_name, **kwargs)

    sky.refused = []
    sky.launch = maybe


def _jobs(tmp_path: Path) -> tuple[Path, list[str]]:
    jobs = tmp_path / "jobs.jsonl"
    ids = [f"c{i:02d}" for i in range(8)]
    jobs.write_text("".join(json.dumps({"id": c, "prompt": f"say {i}", "max_tokens": 2, "temperature": 0}) + "\n"
                            for i, c in enumerate(ids)))
    return jobs, ids


def _submit(cli, jobs: Path, out: Path, broker: str):  # type: ignore[no-untyped-def]
    return cli.invoke(app, ["submit", str(jobs), "--backend", "sky", "--model", "SmolLM2-135M", "--deadline", "2h",
                            "--broker", broker, "--out", str(out), "--shard-size", "2", "--yes"])


@pytest.mark.slow
def test_no_capacity_for_the_first_group_is_replanned_without_it_and_the_run_finishes(
        cli, tmp_path: Path, smollm2_dir: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _no_capacity()  # SkyPilot's own exception class, imported before `sky` is faked
    sky = fake_sky(smollm2_dir, tmp_path)
    refusing(sky, lambda name: name.endswith("-g0"))
    monkeypatch.setitem(sys.modules, "sky", sky)
    jobs, ids = _jobs(tmp_path)
    out = tmp_path / "results.jsonl"
    result = _submit(cli, jobs, out, redis_url)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == ids  # each once
    (run_dir,) = runs_dir().iterdir()
    store = RunStore.open(run_dir.name)
    plan = store.plan()
    assert plan is not None
    failed = plan.groups[0]
    (event,) = store.events(Event.LAUNCH_FAILED)
    assert f"{failed.cloud}/{failed.region}/{failed.instance_type}" in event and "no capacity" in event
    assert "could not launch (no capacity" in result.output and "Traceback" not in result.output
    replacements = [g for g in plan.groups[1:] if g.instance_type == failed.instance_type and g.region == failed.region]
    assert not replacements and len(plan.groups) > 1  # re-planned away from the refused offering
    ((refused, _),) = sky.refused  # one refusal; the replacement launched
    assert refused.endswith("-g0") and {n for n, *_ in sky.launched} | {refused} <= set(sky.downed) and not sky.nodes
    report = (run_dir / "report.csv").read_text()
    assert f"{failed.cloud}/{failed.instance_type}" in report  # the failed attempt is a row of the report, with its cost


@pytest.mark.slow
def test_every_launch_refused_stops_in_one_line_and_resume_finishes(
        cli, tmp_path: Path, smollm2_dir: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess

    from costserve.run.launch_failure import MAX_LAUNCH_FAILURES
    from node_sim import FAKE_SKY, persistent_fake_sky

    state = tmp_path / "sky-state"
    state.mkdir()
    monkeypatch.setenv("FAKE_SKY_DIR", str(state))
    monkeypatch.setenv("FAKE_SKY_MODEL", str(smollm2_dir))
    jobs, ids = _jobs(tmp_path)
    out = tmp_path / "results.jsonl"
    env = {**os.environ, "FAKE_SKY_REFUSE": ".", "COSTSERVE_BROKER": redis_url, "FAKE_SKY_SERVER_UP": "0",
           "PYTHONPATH": os.pathsep.join([str(FAKE_SKY), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.run([sys.executable, "-m", "costserve.cli", "submit", str(jobs), "--backend", "sky", "--model",
                             "SmolLM2-135M", "--deadline", "2h", "--out", str(out), "--shard-size", "2", "--yes"],
                            env=env, capture_output=True, text=True, timeout=600)
    output = driver.stdout + driver.stderr
    assert driver.returncode != 0 and "Traceback" not in output, output
    (run_dir,) = runs_dir().iterdir()
    store = RunStore.open(run_dir.name)
    refused = (state / "refused.log").read_text().split()
    assert len(refused) == MAX_LAUNCH_FAILURES == len(store.events(Event.LAUNCH_FAILED))
    stop = [line for line in output.splitlines() if "launches refused" in line]
    assert len(stop) == 1 and f"costserve resume {store.id}" in stop[0], output
    assert store.state() is RunState.STOPPED and StopReason.NO_CAPACITY.value in store.events(Event.STOP_REASON)
    assert not list(state.glob("*.json")) and set(refused) <= set((state / "downed.log").read_text().split())
    assert (state / "api_stop.log").read_text().split() == ["stopped"]  # the API server the run started: stopped
    assert "stopped the SkyPilot API server this run started" in output
    status = cli.invoke(app, ["status", store.id, "--json"])
    assert status.exit_code == 0 and "no capacity" in status.output
    monkeypatch.setitem(sys.modules, "sky", persistent_fake_sky())  # capacity is back
    monkeypatch.setenv("COSTSERVE_BROKER", redis_url)
    resumed = cli.invoke(app, ["resume", store.id])
    assert resumed.exit_code == 0, resumed.output
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == ids
    assert not list(state.glob("*.json"))  # torn down at the end


def test_a_quota_rules_out_every_type_under_it() -> None:
    from types import SimpleNamespace

    from costserve.planning.offerings import current_offerings
    from costserve.run.launch_failure import LaunchFailure, rule_out
    from catalog.aws_limits import instance_family

    offerings, _, _ = current_offerings()
    region = "us-east-1"
    g_family = offerings[(offerings["cloud"] == "aws") & (offerings["region"] == region)
                         & offerings["instance_type"].map(lambda t: instance_family(t) == "G and VT")]
    assert len(g_family) >= 2  # the catalog has several G types there: the test means something
    group = SimpleNamespace(cloud="aws", region=region, instance_type=g_family.iloc[0]["instance_type"], spot=False)
    quota = LaunchFailure("quota", "You have requested more vCPU capacity than your current vCPU limit")
    what = rule_out(offerings, group, quota)
    assert what == f"aws/{region} G and VT family (on-demand quota)"
    assert (offerings.loc[g_family.index, "availability"] == 0).all()
    others = offerings[(offerings["cloud"] == "aws") & ~offerings.index.isin(g_family.index)]
    assert (others["availability"] > 0).any()  # P and standard types, other regions: untouched
    spot = SimpleNamespace(cloud="aws", region=region, instance_type=g_family.iloc[0]["instance_type"], spot=True)
    fresh, _, _ = current_offerings()
    rule_out(fresh, spot, quota)  # a spot quota removes the family's spot prices, not its on-demand offerings
    assert fresh.loc[g_family.index, "spot_price_per_hour"].isna().all()
    assert (fresh.loc[g_family.index, "availability"] > 0).all()


def test_a_quota_failure_replans_away_from_every_type_under_that_quota() -> None:
    from types import SimpleNamespace

    from catalog.aws_limits import instance_family
    from catalog.load import load_models
    from costserve.planning.offerings import current_offerings
    from costserve.run.launch_failure import LaunchFailure, rule_out
    from solver.planner import plan_batch
    from solver.workload import bucket_workload

    offerings, gpus, _ = current_offerings()
    aws = offerings[offerings["cloud"] == "aws"].copy()
    model = load_models().set_index("model", drop=False).loc["Llama-3.1-8B"]
    workload = bucket_workload([(150, 100, 40_000)])
    first = plan_batch(workload, model, aws, gpus, 3 * 3600, with_baselines=False)
    g = first.groups[0]
    family = instance_family(g.instance_type)
    rule_out(aws, SimpleNamespace(cloud="aws", region=g.region, instance_type=g.instance_type, spot=False),
             LaunchFailure("quota", "VcpuLimitExceeded: You have requested more vCPU capacity than your current limit"))
    again = plan_batch(workload, model, aws, gpus, 3 * 3600, with_baselines=False)
    assert again.groups and not any(h.region == g.region and instance_family(h.instance_type) == family
                                    for h in again.groups)


def test_what_skypilot_raises_is_classified_by_its_cause() -> None:
    from sky.exceptions import CloudError, ResourcesUnavailableError

    from costserve.run.launch_failure import classify

    quota = ResourcesUnavailableError("Failed to acquire resources in all zones in us-east-1", failover_history=[
        CloudError("You have requested more vCPU capacity than your current vCPU limit", "AWS", "VcpuLimitExceeded")])
    capacity = _no_capacity()
    assert classify(quota) is not None and classify(quota).kind == "quota"  # type: ignore[union-attr]
    assert classify(capacity) is not None and classify(capacity).kind == "no capacity"  # type: ignore[union-attr]
    other = classify(CloudError("The subnet does not exist", "AWS", "InvalidSubnetID.NotFound"))
    assert other is not None and other.kind == "cloud error" and "subnet" in other.detail
    assert classify(ValueError("a bug")) is None  # not the cloud refusing: re-raised by the caller


def test_a_head_node_refused_in_one_region_launches_in_the_next_and_all_refused_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import pandas as pd

    from costserve.errors import NoCapacity
    from costserve.run.sky_launch import launch_clusters
    from deploy.sky_fleet import SkyFleet

    _no_capacity()
    sky = types.ModuleType("sky")
    sky.launched, sky.downed, sky.refuse = [], [], {"us-east-1"}  # type: ignore[attr-defined]

    def launch(task, cluster_name: str, **_):  # type: ignore[no-untyped-def]
        region = task.config["resources"]["infra"].split("/")[1]
        if region in sky.refuse:  # type: ignore[attr-defined]
            raise _no_capacity()
        sky.launched.append((cluster_name, region))  # type: ignore[attr-defined]

    handle = types.SimpleNamespace(head_ip="10.0.0.7")
    sky.Task = types.SimpleNamespace(from_yaml_config=lambda c: types.SimpleNamespace(  # type: ignore[attr-defined]
        config=c, update_secrets=lambda s: None))
    sky.launch, sky.get = launch, (lambda r: r)  # type: ignore[attr-defined]
    sky.status = lambda cluster_names: [{"name": n, "handle": handle} for n in cluster_names]  # type: ignore[attr-defined]
    sky.down = lambda name: sky.downed.append(name)  # type: ignore[attr-defined]
    sky.tail_logs = lambda *a, **k: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sky", sky)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "a", "prompt": "hi"}\n')
    store = RunStore.create(jobs, 1)
    fleet = SkyFleet(store.id)
    groups = types.SimpleNamespace(groups=[types.SimpleNamespace(cloud="aws", region=r) for r in ("us-east-1", "us-west-2")])
    offerings = pd.DataFrame({"gpu": ["cpu"], "cloud": ["aws"], "price_per_hour": [0.1], "vcpus": [2]})
    broker, failed = launch_clusters(store, fleet, groups, [], 0, None, offerings, None)  # type: ignore[arg-type]
    assert "@10.0.0.7:6379/0" in broker and failed == []
    assert sky.launched == [(f"cs-{store.id}-broker", "us-west-2")] and sky.downed == [f"cs-{store.id}-broker"]
    (event,) = store.events(Event.LAUNCH_FAILED)
    assert "broker head node (aws/us-east-1): no capacity" in event
    assert "infra: aws/us-west-2" in (store.dir / "sky" / "broker.yaml").read_text()  # the file says where it went
    sky.refuse = {"us-east-1", "us-west-2"}  # type: ignore[attr-defined]
    with pytest.raises(NoCapacity, match=r"could not launch \(aws/us-east-1: no capacity; aws/us-west-2: no capacity\)"):
        launch_clusters(store, SkyFleet(store.id), groups, [], 0, None, offerings, None)  # type: ignore[arg-type]
