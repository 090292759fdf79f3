"""SkyPilot nodes simulated on this machine: only `sky.launch` is faked, the task runs as a node would run it.

`launch` gives each node a fresh HOME, copies the task's file mounts into it, runs the task's
`setup` with bash (it builds its own virtual environment from the mounted wheel: nothing from
the test's environment is on the node's PATH) and starts its `run` in its own session, with the
task's envs and the secrets the launch supplied. `tail_logs` returns a node's output; `down`
kills its processes. With `cpu_engine`, a GPU group's replica is run on this machine's CPU by
costserve's engine (a vLLM replica too: the node installs the engine extra in place of vLLM's
GPU build; otherwise the setup path is the one a GPU node runs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

SETUP_TIMEOUT_S = 1800  # a fresh venv with costserve's dependencies, downloaded from PyPI


FAKE_SKY = Path(__file__).parent / "fixtures" / "fake_sky"


def persistent_fake_sky() -> types.ModuleType:
    """tests/fixtures/fake_sky/sky: clusters kept in $FAKE_SKY_DIR, outliving the process that launched them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sky", FAKE_SKY / "sky" / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Task = persistent_fake_sky().Task  # a task's YAML config and the secrets its launch supplies


def skypilot_api_server(up: bool = True) -> types.SimpleNamespace:
    """`sky.server` as costserve asks it (deploy/sky_api.py): the API server's status; up, so costserve stops nothing."""
    status = types.SimpleNamespace(status=types.SimpleNamespace(value="healthy" if up else "unhealthy"))
    return types.SimpleNamespace(common=types.SimpleNamespace(get_api_server_status=lambda: status))


def node_path() -> str:
    """A node image's PATH: the machine's own Python (the one this venv was made from) and the system's binaries."""
    base = Path(getattr(sys, "_base_executable", sys.executable)).parent
    return f"{base}:/usr/local/bin:/usr/bin:/bin"


def on_this_cpu(replica_json: str) -> str:
    """A GPU group's replica as this CPU runs it: every stage on the cpu, by costserve's engine (a vLLM replica's
    layers and batch kept, its vLLM settings dropped: vLLM's GPU build does not run here)."""
    replica = json.loads(replica_json)
    for stage in replica["stages"]:
        stage["device"] = "cpu"
    replica.update(engine="costserve", vllm=None, tp=1)
    return json.dumps(replica)


class SimulatedCloud:
    """Clusters of simulated nodes under `root`; `sky()` is the module the driver imports as `sky`."""

    def __init__(self, root: Path, cpu_engine: bool = False, pip_cache: Path | None = None) -> None:
        self.root, self.cpu_engine, self.pip_cache = root, cpu_engine, pip_cache
        self.nodes: dict[str, list[tuple[Path, subprocess.Popen]]] = {}  # type: ignore[type-arg]
        self.launched: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.downed: list[str] = []

    def sky(self) -> types.ModuleType:
        module = types.ModuleType("sky")
        module.Task = Task  # type: ignore[attr-defined]
        module.launch, module.down, module.status = self.launch, self.down, self.status  # type: ignore[attr-defined]
        module.tail_logs, module.get = self.tail_logs, (lambda request: request)  # type: ignore[attr-defined]
        module.server = skypilot_api_server()  # type: ignore[attr-defined]
        return module

    def launch(self, task: Task, cluster_name: str, idle_minutes_to_autostop: int, down: bool) -> tuple[str, str]:
        assert idle_minutes_to_autostop > 0 and down  # the autostop guard is always on
        self.launched.append((cluster_name, task.config, dict(task.secrets)))
        self.nodes[cluster_name] = [self._start_node(task, self.root / f"{cluster_name}-{k}") for k in range(task.config["num_nodes"])]
        return ("launch", cluster_name)

    def _start_node(self, task: Task, home: Path) -> tuple[Path, subprocess.Popen]:  # type: ignore[type-arg]
        home.mkdir(parents=True)
        for target, source in task.config.get("file_mounts", {}).items():
            dest = Path(target.replace("~", str(home), 1))
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, dest)
            if self.cpu_engine and dest.name == "replica.json":
                dest.write_text(on_this_cpu(dest.read_text()))
        machine_pip = Path.home() / ".config" / "pip" / "pip.conf"  # the image is configured like this machine
        if machine_pip.is_file():
            (home / ".config" / "pip").mkdir(parents=True)
            shutil.copy(machine_pip, home / ".config" / "pip" / "pip.conf")
        env = {"HOME": str(home), "PATH": node_path(), "LANG": "C.UTF-8",
               **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},  # the machine's package settings
               **({"PIP_CACHE_DIR": str(self.pip_cache)} if self.pip_cache else {}),  # downloads shared between nodes
               **task.config.get("envs", {}), **task.secrets}
        setup_script = task.config["setup"]
        if self.cpu_engine:  # the engine extra at the driver's versions in place of vLLM's GPU build
            setup_script = re.sub(r'"([^"]*/wheel)/([^"]+\.whl)\[vllm\]"', r'-c "\1/constraints.txt" "\1/\2[engine]"', setup_script)
        log = home / "node.log"
        with log.open("w") as out:
            setup = subprocess.run(["bash", "-c", setup_script], cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   timeout=SETUP_TIMEOUT_S)
        if setup.returncode != 0:
            raise RuntimeError(f"node setup failed ({setup.returncode}): {log.read_text()[-3000:]}")
        with log.open("a") as out:
            proc = subprocess.Popen(["bash", "-c", task.config["run"]], cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        return home, proc

    def status(self, cluster_names: list[str]) -> list[dict[str, str]]:
        return [{"name": n, "status": "UP"} for n in cluster_names if n in self.nodes]

    def tail_logs(self, cluster_name: str, job_id: Any, follow: bool, tail: int = 0, output_stream: Any = None) -> int:
        for home, _ in self.nodes.get(cluster_name, []):
            output_stream.write((home / "node.log").read_text())
        return 0

    def down(self, name: str) -> tuple[str, str]:
        for _, proc in self.nodes.pop(name, []):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.downed.append(name)
        return ("down", name)
