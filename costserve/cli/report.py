"""`costserve report RUN [--html F] [--csv F]` and `costserve report --since 30d`: cost reports from the run store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from costserve.cli.output import console, emit_json, fail, frame_table
from costserve.report.files import write_report_files
from costserve.store.runs import RunStore
from costserve.units import format_value

if TYPE_CHECKING:
    import pandas as pd

    from costserve.report.data import RunReport

SHOWN_GROUP_COLUMNS = [
    "group",
    "offering",
    "instances",
    "instance-hours",
    "$/h",
    "planned cost $",
    "cost $",
    "jobs",
    "output tokens",
    "planned tokens/s",
    "tokens/s",
    "planned batch",
    "steady occupancy",
]


def show_run_report(
    run_id: str | None, html_path: Path | None, csv_path: Path | None, json_out: bool = False, baselines: bool = False
) -> None:
    """Print one run's report (None: the latest run; one JSON object with `json_out`: totals, groups, baselines); write HTML/CSV when asked.
    A run on this machine shows what the cloud would cost for the same batch only with `baselines`."""
    import pandas as pd

    from costserve.report.data import build_report

    try:
        store = RunStore.open(run_id)
    except FileNotFoundError as exc:
        fail(f"{exc} (see `costserve runs`)")
    report = build_report(store)
    if json_out:
        emit_json({**report.as_json(), "dry_run": store.dry_run})
    if len(report.groups):
        console.print(
            frame_table(report.groups[[c for c in SHOWN_GROUP_COLUMNS if c in report.groups]], f"run {store.id}: fleet")
        )
    totals = [(k, format_value(k, v)) for k, v in report.totals().items() if k != "run"]
    console.print(frame_table(pd.DataFrame(totals, columns=["figure", "value"]), "totals"))
    prediction = report.prediction()
    if prediction["checks"]:
        console.print(frame_table(_checks_frame(report), "prediction vs this run (off: more than ±25%)"))
        for cause in prediction["causes"]:
            console.print(f"  likely cause: {cause}", markup=False)
    for line in prediction["batch"]:
        if line not in prediction["causes"]:
            console.print(f"  {line}", markup=False)
    for line in report.steering:
        console.print(f"deadline steering: {line}", markup=False, highlight=False)
    shown = len(report.baselines) and (baselines or not report.local)
    if shown:
        title = (
            "what the cloud would cost for the same batch (predicted)"
            if report.local
            else "baselines for the same batch (predicted)"
        )
        console.print(frame_table(report.baselines, title))
    elif len(report.baselines):
        console.print(
            f"a run on this machine: `costserve report {store.id} --baselines` shows what the cloud would cost",
            markup=False,
        )
    write_report_files(report, html_path, csv_path, baselines=bool(shown))
    for path in (html_path, csv_path):
        if path is not None:
            console.print(f"report written to {path}", markup=False)


def show_trend(since: str, html_path: Path | None, csv_path: Path | None, json_out: bool = False) -> None:
    """Runs of the last `since` (e.g. 30d): cost per run, $/1M tokens, jobs; HTML with a trend plot when asked;
    the rows as a JSON list with `json_out`."""
    from costserve.durations import format_money, parse_duration
    from costserve.report.data import runs_since
    from costserve.units import json_records

    try:
        since_s = parse_duration(since)
    except ValueError as exc:
        fail(f"--since: {exc}")
    frame = runs_since(since_s)
    if json_out:
        emit_json(json_records(frame))
    if frame.empty:  # the files are still written: a nightly trend page must not go stale
        console.print(f"no runs in the last {since}")
    else:
        title = f"runs in the last {since}: {format_money(float(frame['cost $'].sum()))}, {frame['jobs'].sum():,} jobs"
        console.print(frame_table(frame, title))
    if csv_path is not None:
        frame.to_csv(csv_path, index=False)
        console.print(f"trend written to {csv_path}", markup=False)
    if html_path is not None:
        from costserve.report.html import render_trend_html

        html_path.write_text(render_trend_html(frame, since))
        console.print(f"trend written to {html_path}", markup=False)


def _checks_frame(report: RunReport) -> pd.DataFrame:
    """Predicted vs actual per figure, in the figure's own unit, and their ratio (costserve/report/accuracy.py)."""
    import pandas as pd

    from costserve.report.accuracy import prediction_checks
    from costserve.units import format_ratio

    return pd.DataFrame(
        [
            {
                "figure": c.label,
                "predicted": format_value(c.metric, c.predicted),
                "actual": format_value(c.metric, c.actual),
                "predicted ÷ actual": "–" if c.ratio is None else format_ratio(c.ratio),
                "off": c.off,
            }
            for c in prediction_checks(report)
        ]
    )
