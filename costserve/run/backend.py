"""The Backend protocol: where a run's workers run.

A backend launches its workers (and a broker), sends the run's queued shards (run/shard_tasks.py,
the same protocol for both), brings what the workers report into the run store, replaces lost workers or groups, and tears everything
down; `run.drive.drive` calls it in that order. Two implementations: `run.local.LocalBackend`
(processes on this machine) and `run.sky_backend.SkyBackend` (SkyPilot clusters).
"""

from __future__ import annotations

from typing import Protocol

from rich.console import RenderableType


class Backend(Protocol):
    """What `drive` and the live view need from the workers of a run, wherever they run."""

    may_add_capacity: bool  # the budget guard turns this off while the projected spend is over budget

    def launch(self) -> None:
        """Start the broker (unless one was given) and the workers, and queue every queued shard."""

    def price_per_hour(self) -> float:
        """$/h of everything launched (workers and broker), for the live view's projection."""

    def poll(self) -> None:
        """Bring what the workers reported into the run store and send waiting shards in place of finished ones."""

    def settle(self) -> None:
        """Once every job has a result: read the final reports still out (their shard runs and occupancy), briefly."""

    def replace_lost(self) -> None:
        """Notice workers or groups that were lost, re-queue their unfinished shards, and replace them."""

    def alive(self) -> bool:
        """Whether any worker can still finish jobs."""

    def status(self, now: float) -> RenderableType:
        """A per-worker (or per-group) status table; `now` is Unix time (s)."""

    def gone(self) -> str:
        """Why the run cannot finish when no worker is alive (one line, naming a log)."""

    def teardown(self) -> str | None:
        """Stop everything launched and close its billing; None, or what is left running and how to stop it (one line)."""
