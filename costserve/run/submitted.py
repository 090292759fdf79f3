"""A submitted run as one value: what a submit passes from planning to the end instead of reading it back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from costserve.request import BatchRequest
from costserve.store.runs import RunStore
from solver.plan import Plan


@dataclass
class Run:
    """One submit's run: its store (id, directory), the request, the plan, the model directory (a local run) and,
    once the run has ended, its exit code (0 every job succeeded, 1 some failed or a dry run was refused)."""

    store: RunStore
    request: BatchRequest
    plan: Plan
    model_dir: Path | None = None
    exit_code: int | None = None

    @property
    def id(self) -> str:
        """The run id (`costserve status ID`)."""
        return self.store.id
