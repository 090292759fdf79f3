"""`costserve submit --backend sky` with the nodes simulated on this machine (tests/node_sim.py): each node runs the
generated task's own setup (a fresh venv from the driver's wheel, the embedded model) and run commands, joins the
run's queue on the real broker and serves its shards. Only `sky.launch` is faked: this is what shows the YAML works,
where SkyPilot's dryrun only shows it parses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from catalog.load import shipped_path, user_catalog_dir
from costserve.store.runs import RunStore, runs_dir
from node_sim import SimulatedCloud

pytestmark = pytest.mark.slow

GROUPS = {  # the one offering the user's catalog keeps: a CPU instance, and a GPU one whose engine runs on the CPU here
    "cpu": ("aws", "us-east-1", "m7i.8xlarge"),
    "gpu": ("aws", "us-east-1", "g6.xlarge"),
}


def only_offering(home: Path, key: tuple[str, str, str]) -> None:
    """The user's catalog (as `catalog refresh` writes it) with one offering: the planner's only choice."""
    offerings = pd.read_csv(shipped_path("offerings.csv"))
    row = offerings[(offerings["cloud"] == key[0]) & (offerings["region"] == key[1]) & (offerings["instance_type"] == key[2])]
    assert len(row) == 1
    user_catalog_dir(home).mkdir(parents=True, exist_ok=True)
    row.assign(availability=1).to_csv(user_catalog_dir(home) / "offerings.csv", index=False)


@pytest.fixture(scope="module")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pip download cache for the module's nodes: the second node's setup does not download again."""
    return tmp_path_factory.mktemp("pip-cache")


def task_files(run_dir: Path, run_id: str) -> dict[str, bytes]:
    """A run's task files, its run id written as RUN; the wheel by name (a build's zip timestamps differ)."""
    files = {}
    for path in sorted((run_dir / "sky").rglob("*")):
        if path.is_file() and "sky-home" not in path.parts:
            key = str(path.relative_to(run_dir)).replace(run_id, "RUN")
            files[key] = b"" if path.suffix == ".whl" else path.read_bytes().replace(run_id.encode(), b"RUN")
    return files


@pytest.mark.parametrize("kind", sorted(GROUPS))
def test_a_generated_task_sets_up_a_node_that_serves_its_group(kind: str, cli, tmp_path: Path, costserve_home: Path,  # type: ignore[no-untyped-def]
                                                             redis_url: str, pip_cache: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from costserve.cli import app

    only_offering(costserve_home, GROUPS[kind])
    cloud = SimulatedCloud(tmp_path / "nodes", cpu_engine=kind == "gpu", pip_cache=pip_cache)
    monkeypatch.setitem(sys.modules, "sky", cloud.sky())
    jobs = tmp_path / "jobs.jsonl"
    ids = [f"{kind}{i}" for i in range(4)]
    jobs.write_text("".join(json.dumps({"id": c, "prompt": f"say {i}", "max_tokens": 3, "temperature": 0}) + "\n"
                            for i, c in enumerate(ids)))
    out = tmp_path / "results.jsonl"
    args = ["submit", str(jobs), "--backend", "sky", "--model", "SmolLM2-135M", "--deadline", "2h", "--shard-size", "2"]
    dry = None
    if kind == "cpu":  # --dry-run writes the files a launch uses
        assert cli.invoke(app, [*args, "--dry-run"]).exit_code == 0
        (dry,) = runs_dir().iterdir()
    result = cli.invoke(app, [*args, "--broker", redis_url, "--out", str(out), "--yes"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == ids  # each once, in input order
    assert all(line["response"]["body"]["model"] == "SmolLM2-135M" for line in lines)
    (run_dir,) = [d for d in runs_dir().iterdir() if d != dry]
    if dry is not None:  # the same files, but the head node's: this launch was given --broker
        written = task_files(dry, dry.name)
        assert written.pop("sky/broker.yaml").startswith(b"# costserve run RUN: the broker head node")
        assert written == task_files(run_dir, run_dir.name)
    plan = RunStore.open(run_dir.name).plan()
    assert plan is not None and [g.instance_type for g in plan.groups] == [GROUPS[kind][2]]
    (name, config, secrets), = cloud.launched
    assert secrets == {"COSTSERVE_BROKER": redis_url} and cloud.downed == [name]
    node = tmp_path / "nodes" / f"{name}-0"
    # the node ran the driver's wheel from its own venv, not this test's environment
    assert (node / "costserve" / "venv" / "bin" / "costserve").is_file()
    assert any(p.name.startswith("costserve-") for p in (node / "costserve" / "venv" / "lib").glob("python3*/site-packages/*.dist-info"))
    log = (run_dir / "logs" / "g0.log").read_text()  # the node's log came back into the run directory
    assert "ready" in log.lower() or "celery" in log.lower(), log[-2000:]
