"""`costserve submit` on the terminal: the SubmitView that shows a submit (run/submit.py) and asks before it starts.

This module decides nothing about a run: `run.submit.submit` plans, creates and runs it. Here
the plan becomes tables, the confirmation a prompt, the run's creation and end `--json` lines.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from costserve.cli.announce import RunAnnouncer
from costserve.cli.output import BadLinePrinter, console, err_console, frame_table
from costserve.cli.plan_view import show_plan
from costserve.errors import BadRequestError, CostserveError
from costserve.request import BatchRequest

if TYPE_CHECKING:
    from costserve.config import Settings
    from costserve.jobs.reader import LineError
    from costserve.run.submitted import Run
    from solver.plan import Plan


class TerminalView:
    """A submit on the terminal: bad lines and the plan shown, a prompt unless `yes`, `--json` lines when asked."""

    def __init__(self, request: BatchRequest, settings: Settings, yes: bool, json_out: bool) -> None:
        self.yes = yes
        self.bad = BadLinePrinter(err_console, settings.max_errors)
        self.announce = RunAnnouncer(request, json_out)

    def bad_line(self, error: LineError) -> None:
        """The first `max_errors` rejected lines, one line each."""
        self.bad(error)

    def plan(self, plan: Plan, title: str) -> None:
        """The plan's tables: groups, quality, output, and what the alternatives would cost."""
        show_plan(plan, title)

    def confirm(self, what: str) -> bool:
        """Yes with --yes; else a prompt. Without a terminal to ask on, --yes is required (BadRequestError)."""
        if self.yes:
            return True
        if not sys.stdin.isatty():
            raise BadRequestError(f"about to {what}: pass --yes to go ahead without a prompt")
        return typer.confirm(f"{what}?", default=True)

    def created(self, run: Run) -> None:
        """The `created` JSON line (with --json)."""
        self.announce.created(run.store)

    def dry_run(self, run: Run, rows: list[dict[str, Any]]) -> None:
        """The SkyPilot tasks' table and where their files are."""
        import pandas as pd

        console.print(frame_table(pd.DataFrame(rows), f"run {run.id}: SkyPilot tasks"))
        console.print("task files to read (a launch writes the same; `sky launch --secret COSTSERVE_BROKER FILE`):")
        for row in rows:
            console.print(f"  {run.store.dir / 'sky' / row['task']}", markup=False, highlight=False)


def submit_here(
    request: BatchRequest,
    settings: Settings,
    broker: str | None,
    yes: bool,
    dry_run: bool,
    json_out: bool = False,
    output_dir: Path | None = None,
) -> int:
    """Run `request` in this process with the terminal as its view; the exit code. Named errors travel up to the
    caller's one_line_errors, after the `ended` JSON line.

    With `json_out`, stdout gets one JSON line when the run is created (its id and paths) and one when it ends
    (status, exit code, counts); `output_dir` also receives the report files."""
    from costserve.run.signals import stop_on_signals
    from costserve.run.submit import submit

    if not err_console.is_terminal:  # transformers' tqdm bars would fill a log with carriage returns
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    view = TerminalView(request, settings, yes, json_out)
    try:
        with stop_on_signals():  # TERM, INT, HUP: the run stops as a cancel does, resumable
            run = submit(request, settings, broker, view, dry_run)
    except CostserveError as exc:
        view.announce.ended(exc.exit_code, str(exc))
        raise
    code = run.exit_code or 0
    view.announce.ended(code, None, output_dir)
    return code


class _CheckOnly(TerminalView):
    """A submit that stops at its confirmation: everything a submit checks, and its plan, with nothing created."""

    would: str | None = None

    def confirm(self, what: str) -> bool:
        self.would = what
        return False


def check_submit(request: BatchRequest, settings: Settings) -> str:
    """Run `request`'s submit up to its confirmation (its checks and plan, shown) and stop; returns what it would do,
    e.g. `launch 2 cloud instance(s), predicted $3.10`. Raises the submit's own one-line errors."""
    from costserve.errors import NotConfirmed
    from costserve.run.submit import submit

    view = _CheckOnly(request, settings, yes=False, json_out=False)
    try:
        submit(request, settings, None, view)
    except NotConfirmed:
        if view.would is not None:
            return view.would
        raise
    raise CostserveError("the checked submit did not stop at its confirmation")  # submit always asks before a run
