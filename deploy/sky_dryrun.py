"""Child process of deploy.skypilot.dryrun: SkyPilot's dryrun of task YAMLs, offline, AWS faked with moto.

Run with HOME and SKY_RUNTIME_DIR pointing at a SkyPilot home that holds costserve's exported
catalog. Before importing the launch path it writes what SkyPilot would otherwise download:
the AWS zone mapping of the (fake) account and an image catalog pointing at moto's AMIs.
Prints one JSON line: {"tasks": [{"file", "ok", "chosen" | "error"}]}. With --parse-only (no rsync here: SkyPilot's
launch path needs it) each file only goes through SkyPilot's task parser, and no AWS account is faked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from typing import Any

DEFAULT_IMAGE_TAGS = (
    "skypilot:custom-cpu-ubuntu",
    "skypilot:custom-cpu-ubuntu-arm64",
    "skypilot:custom-gpu-ubuntu",
    "skypilot:custom-gpu-ubuntu-arm64",
    "skypilot:custom-gpu-ubuntu-cuda13",
    "skypilot:custom-gpu-ubuntu-arm64-cuda13",
)


def _prepare_aws_home() -> None:
    """Zone mapping for the moto account (zones map to themselves) and moto's AMIs as SkyPilot's default images."""
    import boto3
    import pandas as pd
    from sky.catalog import common
    from sky.clouds import aws

    identity = (aws.AWS.get_active_user_identity() or ["unknown"])[0]
    user_hash = hashlib.md5(identity.encode(), usedforsecurity=False).hexdigest()[:8]
    vms = pd.read_csv(common.get_catalog_path("aws/vms.csv"))
    zones = sorted(set(vms["AvailabilityZone"].dropna()))
    pd.DataFrame({"AvailabilityZone": zones, "AvailabilityZoneName": zones}).to_csv(
        common.get_catalog_path(f"aws/az_mappings-{user_hash}.csv"), index=False
    )
    rows = []
    for region in sorted(set(vms["Region"])):
        ami = boto3.client("ec2", region_name=region).describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        rows += [
            {
                "Tag": tag,
                "Region": region,
                "OS": "ubuntu",
                "OSVersion": "22.04",
                "ImageId": ami,
                "CreationDate": "20250101",
            }
            for tag in DEFAULT_IMAGE_TAGS
        ]
    pd.DataFrame(rows).to_csv(common.get_catalog_path("aws/images.csv"), index=False)


def _check(path: str, launch: bool) -> dict[str, Any]:
    """One task file through SkyPilot's task parser and, with `launch`, its launch dryrun; its report entry."""
    import sky
    import yaml

    with open(path) as f:
        config = yaml.safe_load(f)
    # the values `sky launch --secret COSTSERVE_BROKER [--secret HF_TOKEN]` would supply
    values = {"COSTSERVE_BROKER": "redis://:dryrun@127.0.0.1:6379/0"}
    overrides = [(name, values.get(name, "dryrun")) for name in config.get("secrets") or {}]
    task = sky.Task.from_yaml_config(config, secrets_overrides=overrides)
    if launch:
        from sky import execution

        execution.launch(task, cluster_name=task.name, dryrun=True, _quiet_optimizer=True)
    (res,) = task.resources
    chosen = {
        "instance_type": res.instance_type,
        "use_spot": res.use_spot,
        "region": res.region,
        "accelerators": res.accelerators,
    }
    return {"file": path, "ok": True, "num_nodes": task.num_nodes, "chosen": chosen}


def main(args: list[str]) -> None:
    """`python -m deploy.sky_dryrun [--parse-only] FILE...`: print the JSON report of every file."""
    parse_only = "--parse-only" in args
    files = [a for a in args if a != "--parse-only"]
    report: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if not parse_only:
            from moto import mock_aws

            stack.enter_context(mock_aws())
            _prepare_aws_home()
        for path in files:
            try:
                report.append(_check(path, launch=not parse_only))
            except Exception as exc:  # report every task, not just the first failure
                report.append({"file": path, "ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
    print(json.dumps({"tasks": report}))


if __name__ == "__main__":
    main(sys.argv[1:])
