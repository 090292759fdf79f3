"""Named errors: what went wrong, in one line that says what to do next.

Everything below the command line raises these (or the named errors of catalog/, solver/ and
workers/, listed in `user_errors`); only `costserve/cli/` turns them into an exit code and a
one-line message on stderr.
"""

from __future__ import annotations


class CostserveError(Exception):
    """A failure the user can act on; `exit_code` is what the command exits with."""

    exit_code = 2


class BadRequestError(CostserveError):
    """An option or a request field has a value costserve cannot use."""


class JobFileRejected(CostserveError):
    """The job file has bad lines, no jobs, or changed while it was read; nothing was run."""


class RunNotFoundError(CostserveError):
    """No run with that id in the run store."""


class RunStateError(CostserveError):
    """The run cannot do what was asked in its current state (still running, nothing to resume, no deadline left)."""


class RunStopped(CostserveError):
    """A run ended before every job had a result (cancelled, budget reached, workers gone); finished results are kept."""


class NotConfirmed(CostserveError):
    """The user declined to start (or there was no terminal to ask on and no --yes)."""

    exit_code = 1


class NoPlanError(CostserveError):
    """No fleet meets the request; the message names the nearest feasible point."""

    exit_code = 1


class BrokerError(CostserveError):
    """The broker given with --broker does not answer (password redacted)."""


class ResultsFileError(CostserveError):
    """The results file could not be written (disk full, file too large, no permission); any previous file is untouched."""


class LaunchError(CostserveError):
    """SkyPilot could not launch (or dry-run) a fleet group's task."""


def user_errors() -> tuple[type[Exception], ...]:
    """Every exception type, in any layer, whose message is a one-line answer for the user (no traceback)."""
    from catalog.load import CatalogError
    from costserve.config import ConfigError
    from costserve.jobs.reader import JobFileError
    from costserve.schedule.store import ScheduleError
    from solver.melange import MelangeFileError
    from solver.plan import ReplicaError
    from solver.profiles import ProfileError
    from solver.workload import WorkloadFileError
    from workers.model_source import ModelSourceError

    return (CostserveError, CatalogError, ConfigError, JobFileError, ScheduleError, ReplicaError, ProfileError,
            WorkloadFileError, ModelSourceError, MelangeFileError)
