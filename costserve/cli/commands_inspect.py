"""Commands that read the run store: `runs`, `status`, `results`, `report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from costserve.cli.app import app
from costserve.cli.help import INSPECT, command
from costserve.cli.output import fail, json_mode

RUN_ID = typer.Argument(help="run id, or a unique prefix of it (see `costserve runs`)")
JSON_FLAG = typer.Option("--json", help="print JSON on stdout instead of tables")


@command(app, INSPECT, "costserve runs --json")
def runs(
    json_out: Annotated[bool, JSON_FLAG] = False,
    dry_runs: Annotated[bool, typer.Option("--dry-runs", help="also list dry runs (`submit --dry-run`)")] = False,
) -> None:
    """List the runs in $COSTSERVE_HOME/runs: jobs, results so far, last event."""
    from costserve.cli.runs import show_runs

    show_runs(json_out, dry_runs)


@command(app, INSPECT, "costserve status 20261202-0715")
def status(
    run: Annotated[
        Optional[str],
        typer.Argument(help="run id, or a unique prefix of it (see `costserve runs`)", show_default="the latest run"),
    ] = None,
    json_out: Annotated[bool, JSON_FLAG] = False,
) -> None:
    """Shards by state, results so far and the latest events of a run (the latest, without a run id)."""
    from costserve.cli.runs import show_status

    show_status(run, json_out)


@command(app, INSPECT, "costserve results 20261202-071530-ab12 --out results.jsonl")
def results(
    run: Annotated[str, RUN_ID],
    out: Annotated[
        Optional[Path], typer.Option(help="write the successful lines here", show_default="standard output")
    ] = None,
    errors_out: Annotated[
        Optional[Path],
        typer.Option(
            help="write the failed requests' lines here", show_default="beside --out; without --out only counted"
        ),
    ] = None,
) -> None:
    """A run's results (OpenAI Batch output lines) in input order; exits 1 while some jobs have none."""
    from costserve.cli.runs import write_results

    raise typer.Exit(write_results(run, out, errors_out))


@command(app, INSPECT, "costserve report 20261202-071530-ab12 --html report.html")
def report(
    run: Annotated[
        Optional[str],
        typer.Argument(help="run id, or a unique prefix of it (see `costserve runs`)", show_default="the latest run"),
    ] = None,
    html: Annotated[
        Optional[Path], typer.Option(help="write a self-contained HTML report (tables and plots) here")
    ] = None,
    csv: Annotated[Optional[Path], typer.Option(help="write the planned-vs-actual table as CSV here")] = None,
    since: Annotated[
        Optional[str],
        typer.Option(help="instead, every run of the last e.g. 30d: the nightly trend (dry runs left out)"),
    ] = None,
    json_out: Annotated[bool, JSON_FLAG] = False,
    baselines: Annotated[
        bool,
        typer.Option(
            help="a run on this machine: also show what the cloud would cost for the same batch (a cloud "
            "run shows its baselines anyway)"
        ),
    ] = False,
) -> None:
    """Cost report of a run: planned vs actual per fleet group, $/1M output tokens, makespan, baselines."""
    from costserve.cli.report import show_run_report, show_trend

    if run is not None and since is not None:
        fail("give a run id or --since PERIOD, not both")
    with json_mode(json_out):
        if since is not None:
            show_trend(since, html, csv, json_out)
        else:
            show_run_report(run, html, csv, json_out, baselines)
