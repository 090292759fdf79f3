"""The SkyPilot backend up to the cloud boundary: a task per fleet group, run through SkyPilot's own dryrun offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from catalog.load import load_gpus, load_models, load_offerings
from deploy.node_setup import HF_TOKEN_SECRET, NodeModel
from deploy.skypilot import BROKER_SECRET, dryrun, write_group_tasks
from solver.planner import plan_batch
from solver.workload import bucket_workload

pytestmark = pytest.mark.slow


def test_every_fleet_group_becomes_a_task_skypilot_accepts_offline(tmp_path: Path) -> None:
    gpus, offerings, models = load_gpus(), load_offerings(), load_models().set_index("model", drop=False)
    aws = offerings[offerings["cloud"] == "aws"]
    workload = bucket_workload([(150, 100, 400_000), (1500, 300, 60_000), (4000, 250, 20_000)])
    plan = plan_batch(workload, models.loc["Llama-3.1-8B"], aws, gpus, 2 * 3600, quality_target=0.99, spot=True,
                      with_baselines=False, confidence=None)  # on the deadline: two offerings (at 90%, one holds it)
    assert len(plan.groups) >= 2, "a mixed fleet makes the test meaningful"
    llama = NodeModel("Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct", gated=True)
    files = write_group_tasks(plan, gpus, tmp_path / "20260101-000000-abcd", llama, hf_token=True)
    assert len(files) == len(plan.groups)
    for i, (path, group) in enumerate(zip(files, plan.groups)):
        config = yaml.safe_load(path.read_text())
        assert config["envs"]["COSTSERVE_QUEUE"] == f"g{i}-20260101-000000-abcd"  # the run's own queue on a shared broker
        assert config["num_nodes"] == group.count and config["resources"]["instance_type"] == group.instance_type
        assert config["resources"]["use_spot"] == group.spot and config["secrets"] == {BROKER_SECRET: None, HF_TOKEN_SECRET: None}
        assert "meta-llama/Llama-3.1-8B-Instruct" in config["setup"] and config["run"].endswith("--model Llama-3.1-8B")
        assert group.replica.engine == "vllm" and ".whl[vllm]" in config["setup"]  # a GPU node installs vLLM
        assert config["resources"]["autostop"]["down"] is True
    report = dryrun(files, tmp_path / "sky-home", aws, gpus)
    assert [t["ok"] for t in report["tasks"]] == [True] * len(files), report
    for task, group in zip(report["tasks"], plan.groups):
        chosen = task["chosen"]
        assert chosen["instance_type"] == group.instance_type and chosen["use_spot"] == group.spot
        assert chosen["region"] == group.region and task["num_nodes"] == group.count
    # no secret value was written anywhere
    assert not any(b"dryrun@" in p.read_bytes() for p in (tmp_path / "20260101-000000-abcd").rglob("*") if p.is_file())


def test_a_task_skypilot_rejects_is_reported_not_raised(tmp_path: Path) -> None:
    gpus, offerings = load_gpus(), load_offerings()
    aws = offerings[offerings["cloud"] == "aws"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "costserve-bad", "resources": {"infra": "aws/us-east-1",
                                                                        "instance_type": "no-such-type.xlarge"},
                                   "run": "true"}))
    report = dryrun([bad], tmp_path / "sky-home", aws, gpus)
    assert report["tasks"][0]["ok"] is False and "no-such-type" in report["tasks"][0]["error"]


def test_submit_backend_sky_dry_run_command(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import json

    from costserve.cli import app
    from costserve.store.runs import runs_dir

    jobs = Path(__file__).resolve().parents[1] / "examples" / "jobs.jsonl"
    # the example's jobs name SmolLM2-135M: serving them with Llama-3.1-8B takes --model-override
    wrong = cli.invoke(app, ["submit", str(jobs), "--backend", "sky", "--model", "Llama-3.1-8B", "--dry-run"])
    assert wrong.exit_code == 2 and "200 line(s) name another model than --model Llama-3.1-8B" in wrong.output
    assert len(wrong.output.strip().splitlines()) == 1  # one line for the file, not one per job
    # Llama-3.1-8B at 16 bits downloads its gated repository: a launch without a token stops in one line, creating nothing
    gated = cli.invoke(app, ["submit", str(jobs), "--backend", "sky", "--model", "Llama-3.1-8B", "--model-override",
                             "--quality", "1", "--yes"])
    assert gated.exit_code != 0 and "is gated on Hugging Face and no token was found" in gated.output
    assert "Traceback" not in gated.output and (not runs_dir().exists() or not any(runs_dir().iterdir()))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_real")
    refused = cli.invoke(app, ["submit", str(jobs), "--backend", "sky", "--model", "Llama-3.1-8B", "--model-override"])
    assert refused.exit_code == 2 and "pass --yes" in refused.output  # a real launch asks first
    assert not runs_dir().exists() or not any(runs_dir().iterdir())
    result = cli.invoke(app, ["submit", str(jobs), "--backend", "sky", "--dry-run", "--model", "Llama-3.1-8B",
                              "--spot", "--deadline", "1h", "--model-override"])
    assert result.exit_code == 0, result.output
    assert "200 job(s) name another model ('SmolLM2-135M' (200)); Llama-3.1-8B serves them" in result.output
    (run_dir,) = runs_dir().iterdir()
    plan = json.loads((run_dir / "plan.json").read_text())
    tasks = sorted((run_dir / "sky").glob("g*.yaml"))
    assert len(tasks) == len(plan["groups"]) >= 1 and {g["cloud"] for g in plan["groups"]} == {"aws"}
    assert result.output.count(" yes ") == len(tasks) + 1  # and the broker head node's task
    head = yaml.safe_load((run_dir / "sky" / "broker.yaml").read_text())
    assert head["resources"]["ports"] == [6379] and head["secrets"] == {"COSTSERVE_REDIS_PASSWORD": None}
    for task in tasks:  # a person can audit it: scripts as block scalars, the exact weights repository named
        text = task.read_text()
        assert "\nsetup: |\n" in text and "\n# weights: https://huggingface.co/" in "\n" + text
    repo = text.split("# weights: https://huggingface.co/")[1].split()[0]
    assert repo in yaml.safe_load(text)["setup"] and f"https://huggingface.co/{repo}" in result.output  # the plan too
    assert json.loads((run_dir / "input.json").read_text())["jobs"] == 200
    # a dry run launched nothing: marked as such, left out of `runs` and of the trend unless asked for
    assert json.loads(cli.invoke(app, ["runs", "--json"]).stdout) == []
    (listed,) = json.loads(cli.invoke(app, ["runs", "--json", "--dry-runs"]).stdout)
    assert listed["run"] == run_dir.name and listed["dry_run"] is True
    assert json.loads(cli.invoke(app, ["report", "--since", "1d", "--json"]).stdout) == []
    status = json.loads(cli.invoke(app, ["status", run_dir.name, "--json"]).stdout)
    assert status["dry_run"] is True and status["jobs"] == 200 and status["results"] == 0
    # the token is a secret the launch supplies: named in the tasks, its value in no file of the run
    for task in tasks:
        assert yaml.safe_load(task.read_text())["secrets"] == {BROKER_SECRET: None, HF_TOKEN_SECRET: None}
    assert not any(b"hf_test_token_not_real" in p.read_bytes() for p in run_dir.rglob("*") if p.is_file())


@pytest.mark.parametrize("source", ["s3://team-weights/llama-3.1-8b", "DIR"])
def test_model_source_mounts_the_users_weights_instead_of_downloading(source: str, tmp_path: Path) -> None:
    from costserve.run.sky_tasks import node_tasks

    gpus, offerings, models = load_gpus(), load_offerings(), load_models().set_index("model", drop=False)
    if source == "DIR":
        source = str(tmp_path / "weights")
        (tmp_path / "weights").mkdir()
    plan = plan_batch(bucket_workload([(150, 100, 4_000)]), models.loc["Llama-3.1-8B"], offerings[offerings["cloud"] == "aws"],
                      gpus, 3 * 3600, with_baselines=False, own_weights=True)  # as submit --model-source plans
    # gated, no token anywhere (the test's HF home is empty): the user's own copy needs none
    (path,) = node_tasks("Llama-3.1-8B", source).write(plan.model_copy(update={"groups": plan.groups[:1]}), gpus, tmp_path / "run")
    config = yaml.safe_load(path.read_text())
    assert config["file_mounts"]["~/.costserve/models/Llama-3.1-8B"] == source
    assert config["secrets"] == {BROKER_SECRET: None} and "snapshot_download" not in config["setup"]
    assert config["run"].endswith("--model Llama-3.1-8B")


def test_a_dry_run_without_token_or_rsync_warns_once_each_and_writes_every_task(cli, tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import json
    import sys

    from costserve.cli import app
    from costserve.store.runs import runs_dir

    jobs = Path(__file__).resolve().parents[1] / "examples" / "jobs.jsonl"
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # this venv's tools, no rsync
    result = cli.invoke(app, ["submit", str(jobs), "--backend", "sky", "--dry-run", "--model", "Llama-3.1-8B",
                              "--model-override", "--quality", "1"])  # 16-bit: the nodes download the gated repository
    assert result.exit_code == 0, result.output
    assert result.output.count("HF_TOKEN: a launch needs one") == 1 and result.output.count("rsync: not found") == 1
    (run_dir,) = runs_dir().iterdir()
    tasks = sorted((run_dir / "sky").glob("*.yaml"))
    plan = json.loads((run_dir / "plan.json").read_text())
    assert {t.name for t in tasks} == {"broker.yaml", *(f"g{i}.yaml" for i in range(len(plan["groups"])))}
    assert result.output.count("yes (parsed)") == len(tasks)  # SkyPilot's task parser read every file back
    for task in tasks:
        assert str(task) in result.output  # the files to read
    for group in (t for t in tasks if t.name.startswith("g")):
        assert yaml.safe_load(group.read_text())["secrets"] == {BROKER_SECRET: None, HF_TOKEN_SECRET: None}
        assert "# weights: https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct\n" in group.read_text()
