"""What `submit` tells a script: the run id and paths when the run exists, the outcome when it ends (`--json`).

Costserve's Python API (`costserve.submit`) reads these two JSON lines from a `costserve submit
--json` child process; a shell script reads them with `jq`. `--output-dir` also gets a copy of
the run's report files here, beside the results and errors files the run wrote there.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from costserve.cli.output import emit_json
from costserve.request import BatchRequest
from costserve.store.runs import RunStore

REPORT_FILES = ("report.html", "report.csv")


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


class RunAnnouncer:
    """Emits the `created` and `ended` JSON lines of one submit (when `json_out`) and copies reports to --output-dir."""

    def __init__(self, request: BatchRequest, json_out: bool) -> None:
        self.request = request
        self.json_out = json_out
        self.store: RunStore | None = None

    def _paths(self) -> dict[str, Any]:
        assert self.store is not None
        return {
            "run": self.store.id,
            "run_dir": str(self.store.dir),
            "results": str(self.request.results_path),
            "errors": str(self.request.errors_path),
            "report": str(self.store.dir / "report.html"),
        }

    def created(self, store: RunStore) -> None:
        """The run exists (its id and directory are final)."""
        self.store = store
        if self.json_out:
            emit_json({"event": "created", **self._paths()})

    def ended(self, code: int, message: str | None, output_dir: Path | None = None) -> None:
        """The submit returns with exit `code` (`message`: why it stopped early, None when it ran to its end)."""
        if self.store is None:
            return  # nothing was created (a refused plan, a bad file): the one-line error says it all
        if output_dir is not None:
            for name in REPORT_FILES:
                if (self.store.dir / name).is_file():
                    shutil.copyfile(self.store.dir / name, output_dir / name)
        if self.json_out:
            status = "finished" if message is None else "stopped"
            emit_json(
                {
                    "event": "ended",
                    "status": status,
                    "exit_code": code,
                    "message": message,
                    "succeeded": _lines(self.request.results_path),
                    "failed": _lines(self.request.errors_path),
                    "jobs": self.store.input_info()["jobs"],
                    **self._paths(),
                }
            )
