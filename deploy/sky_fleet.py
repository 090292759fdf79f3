"""Launching and tearing down a run's clusters with SkyPilot's Python API (`sky.launch`, `sky.status`, `sky.down`).

This is the cloud boundary: tests replace the `sky` module, nothing below it. Cluster names
carry the run id, so `sky status` shows which run a cluster belongs to and `down_all` after a
crash can find them. Secrets (the broker URL, the Redis password) reach SkyPilot only as task
secrets, never in a file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from costserve.errors import LaunchError
from deploy.skypilot import AUTOSTOP_IDLE_MINUTES, REDIS_PASSWORD_SECRET


def cluster_name(run_id: str, part: str) -> str:
    """A valid SkyPilot cluster name for one part (`broker`, `g0`, ...) of a run."""
    return re.sub(r"[^a-z0-9-]", "-", f"cs-{run_id}-{part}".lower())[:63]


class SkyFleet:
    """The clusters of one run: launched in order, all torn down by `down_all`. With `logs_dir`, each cluster's job log
    (`sky.tail_logs`) is saved there as `<part>.log` before the cluster goes down."""

    def __init__(self, run_id: str, logs_dir: Path | None = None) -> None:
        self.run_id, self.logs_dir = run_id, logs_dir
        self.launched: list[str] = []

    def launch_broker(self, config: dict[str, Any], password: str) -> str:
        """Launch the Redis head node from its task config; returns its public IP."""
        import sky

        task = sky.Task.from_yaml_config(config)
        task.update_secrets({REDIS_PASSWORD_SECRET: password})
        name = cluster_name(self.run_id, "broker")
        self._launch(task, name)
        records = sky.get(sky.status(cluster_names=[name]))
        handle = records[0]["handle"] if isinstance(records[0], dict) else records[0].handle
        if handle is None:
            raise LaunchError(f"{name}: SkyPilot launched the broker cluster but reports no handle (no head IP)")
        return str(handle.head_ip)

    def launch_group(self, task_file: Path, part: str, secrets: dict[str, str]) -> str:
        """Launch one fleet group's task (its YAML from write_group_tasks) with its secret values (the broker URL,
        a Hugging Face token)."""
        import sky

        task = sky.Task.from_yaml(str(task_file))
        task.update_secrets(secrets)
        name = cluster_name(self.run_id, part)
        self._launch(task, name)
        return name

    def _launch(self, task: Any, name: str) -> None:
        import sky

        self.launched.append(name)  # before launching: a half-launched cluster must be torn down too
        sky.get(sky.launch(task, cluster_name=name, idle_minutes_to_autostop=AUTOSTOP_IDLE_MINUTES, down=True))

    def statuses(self, names: list[str]) -> dict[str, str]:
        """SkyPilot's status (UP, INIT, STOPPED) of each named cluster that still exists; a gone cluster is absent."""
        import sky

        records = sky.get(sky.status(cluster_names=names))
        out = {}
        for record in records:
            name = record["name"] if isinstance(record, dict) else record.name
            status = record["status"] if isinstance(record, dict) else record.status
            out[name] = getattr(status, "value", str(status))
        return out

    def save_logs(self, name: str) -> None:
        """Copy cluster `name`'s job log into `logs_dir` (`g0.log`, ...); a log SkyPilot cannot give is noted there."""
        if self.logs_dir is None:
            return
        import sky

        self.logs_dir.mkdir(parents=True, exist_ok=True)
        part = name.removeprefix(cluster_name(self.run_id, ""))
        with (self.logs_dir / f"{part or name}.log").open("a") as out:
            try:
                sky.tail_logs(name, None, False, output_stream=out)
            except Exception as exc:  # noqa: BLE001 — a gone or unreachable cluster: teardown goes on
                out.write(f"costserve: no log from {name}: {type(exc).__name__}: {exc}\n")

    def forget(self, name: str) -> None:
        """Tear down one cluster now (a lost group's remains) and stop tracking it."""
        import sky

        self.save_logs(name)
        try:
            sky.get(sky.down(name))
        except Exception:  # noqa: BLE001 — it may be gone already; down_all no longer owns it either way
            pass
        if name in self.launched:
            self.launched.remove(name)

    def down_all(self) -> list[str]:
        """Tear down every cluster this run launched, newest first; returns the names that failed to go down."""
        import sky

        failed = []
        for name in reversed(self.launched):
            self.save_logs(name)
            try:
                sky.get(sky.down(name))
            except Exception:  # noqa: BLE001 — keep tearing the rest down; the caller reports what is left
                failed.append(name)
        return failed
