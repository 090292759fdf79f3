"""Named errors: what went wrong, in one line that says what to do next, and the data that line is built from.

Every exception class of costserve's five packages descends from `CostserveError`, with one
family per layer (request, catalog, planning, worker, deploy, store, run). This module imports
nothing of the project, so `solver/`, `workers/`, `deploy/` and `catalog/` raise these families
too (the one import they may make from `costserve/`). Only `costserve/cli/` turns a
`CostserveError` into its exit code and its one line on stderr (`cli/output.one_line_errors`).
"""

from __future__ import annotations

from enum import StrEnum


class CostserveError(Exception):
    """A failure the user can act on; `exit_code` is what the command exits with, `str()` the one line it prints."""

    exit_code = 2


# ---- one family per layer -------------------------------------------------------------------------------------------


class RequestError(CostserveError):
    """Input costserve cannot use: an option, a job file, a config or schedules file (nothing was run)."""


class CatalogError(CostserveError):
    """A price, availability or quality catalog is missing, unreadable or cannot be refreshed (catalog/)."""


class PlanningError(CostserveError):
    """No plan meets the request (solver/): the message says why and names the nearest feasible point."""

    exit_code = 1


class PlanInputError(CostserveError):
    """A file the planner reads (a replica, a device profile, a workload, a Mélange table) is unreadable (solver/)."""


class WorkerError(CostserveError):
    """A model or an engine a worker needs cannot be had (workers/)."""


class DeployError(CostserveError):
    """A node cannot be set up or a fleet group launched (deploy/, SkyPilot)."""


class StoreError(CostserveError):
    """The run store cannot be read or written (locked, full, no permission); finished results are kept."""


class RunError(CostserveError):
    """A run cannot do what was asked in its state, or stopped before every job had a result."""


# ---- request ---------------------------------------------------------------------------------------------------------


class BadRequestError(RequestError):
    """An option or a request field has a value costserve cannot use."""


class JobFileRejected(RequestError):
    """The job file has bad lines, no jobs, or changed while it was read; nothing was run."""


class OverBudget(RequestError):
    """The plan's predicted cost ($) is over `--budget` ($); nothing was run."""

    def __init__(self, predicted: float, budget: float, where: str) -> None:
        self.predicted, self.budget = predicted, budget
        super().__init__(
            f"--budget {_dollars(budget)}: the predicted cost {where} is {_dollars(predicted)}; raise --budget"
        )


def _dollars(value: float) -> str:
    """$ with cents from $1, four decimals below, `<$0.0001` for a sliver (as durations.format_money writes money;
    this module imports nothing of the project)."""
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}" if value >= 0.0001 else "<$0.0001"


class NotConfirmed(RequestError):
    """The user declined to start; nothing was run."""

    exit_code = 1

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"nothing was run (declined: {what})")


# ---- run -------------------------------------------------------------------------------------------------------------


class BrokerError(RunError):
    """The broker given with --broker does not answer (password redacted)."""


class RunStateError(RunError):
    """The run cannot do what was asked in its current state (still running, nothing to resume, no deadline left)."""


class StopReason(StrEnum):
    """Why a run ended before every job had a result; every one is resumable (`costserve resume RUN`)."""

    CANCELLED = "cancelled"
    BUDGET = "budget"
    WORKERS_GONE = "workers gone"
    SHARD_FAILED = "shard failed"
    DISK_FULL = "disk full"
    STORE_FULL = "store full"
    RESULTS_FILE = "results file"
    NO_CAPACITY = "no capacity"
    SIGNAL = "signal"
    BROKER_GONE = "broker gone"
    ERROR = "error"


class RunStopped(RunError):
    """A run ended before every job had a result; `reason` says why, `detail` how (one line). Finished results are kept.

    Raised where the stop happens (the live loop, the budget guard, the disk watch) and carried, typed, to the run's
    final event, `status` and `runs`."""

    reason = StopReason.ERROR

    def __init__(self, detail: str = "", reason: StopReason | None = None) -> None:
        if reason is not None:
            self.reason = reason
        self.detail = detail
        super().__init__(detail or self.reason.value)

    def restated(self, detail: str) -> RunStopped:
        """The same stop (its reason and exit code) told as `detail`: the run's final line, with how to resume it."""
        stop = RunStopped(detail, self.reason)
        stop.exit_code = self.exit_code
        return stop


class Cancelled(RunStopped):
    """`costserve cancel` asked the run to stop."""

    reason = StopReason.CANCELLED


class BudgetReached(RunStopped):
    """Spending one more billing increment would cross the budget; `detail` says what was spent."""

    reason = StopReason.BUDGET


class WorkersGone(RunStopped):
    """Every worker process (or fleet group) exited before the run finished."""

    reason = StopReason.WORKERS_GONE


class NoCapacity(RunStopped):
    """No offering left could launch the remaining work within the deadline and budget (capacity, quota, cloud errors)."""

    reason = StopReason.NO_CAPACITY


class ShardFailed(RunStopped):
    """A shard failed on every attempt the workers allow."""

    reason = StopReason.SHARD_FAILED


class DiskFull(RunStopped):
    """The run directory's filesystem stayed full: workers cannot record results."""

    reason = StopReason.DISK_FULL


class Signalled(RunStopped):
    """The driver got SIGTERM, SIGINT or SIGHUP; it exits 128 + the signal's number, as a shell reports a signal."""

    reason = StopReason.SIGNAL

    def __init__(self, signal_name: str, signal_number: int) -> None:
        super().__init__(f"stopped by {signal_name}")
        self.exit_code = 128 + signal_number


class BrokerGone(RunStopped):
    """The run's broker stopped answering for longer than the run waits for it (or could not be restarted)."""

    reason = StopReason.BROKER_GONE


# ---- store -----------------------------------------------------------------------------------------------------------


class StoreLocked(StoreError):
    """The run store stayed locked by another process past the wait."""


class StoreFull(StoreError, RunStopped):
    """The run store's filesystem stayed full past the wait; the run stops (resumable)."""

    reason = StopReason.STORE_FULL


class ResultsFileError(StoreError):
    """The results file could not be written (disk full, file too large, no permission); any previous file is untouched."""


# ---- deploy ----------------------------------------------------------------------------------------------------------


class LaunchError(DeployError):
    """SkyPilot could not launch (or dry-run) a fleet group's task."""
