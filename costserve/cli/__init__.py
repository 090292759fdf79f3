"""The `costserve` command line. Heavy libraries (pandas, sky, torch) are imported inside commands.

The commands live in `commands_*.py` by what they do (run a batch, inspect runs, plan and serve),
each registered on the one Typer `app` of `app.py`; the catalog and schedule groups are Typer
sub-apps of their own.
"""

from __future__ import annotations

from costserve import notices
from costserve.cli import (
    commands_engine,  # noqa: F401
    commands_inspect,  # noqa: F401
    commands_run,  # noqa: F401  (each commands_* module registers its commands, in help order)
)
from costserve.cli.app import app
from costserve.cli.calibration import calibration_app
from costserve.cli.catalog import catalog_app
from costserve.cli.help import CATALOG, PLAN, SCHEDULE
from costserve.cli.schedule import schedule_app
from costserve.cli.terminal import TerminalNotices
from workers.cpu import prefer_passive_omp

notices.install(TerminalNotices())  # run orchestration reports through costserve.notices; the CLI shows it here
prefer_passive_omp()  # before any command imports torch: workers and engines started from here inherit it

app.add_typer(catalog_app, name="catalog", rich_help_panel=CATALOG)
app.add_typer(schedule_app, name="schedule", rich_help_panel=SCHEDULE)
app.add_typer(calibration_app, name="calibration", rich_help_panel=PLAN)

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
