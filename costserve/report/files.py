"""The report files of a run: `report.html` (self-contained) and `report.csv` (planned vs actual per group, totals)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from costserve.store.runs import RunStore

if TYPE_CHECKING:
    import pandas as pd

    from costserve.report.data import RunReport


def report_csv_frame(report: RunReport) -> pd.DataFrame:
    """Per-group planned vs actual rows plus a `total` row (cost $, jobs, tokens, makespan s)."""
    import pandas as pd

    total = {
        "group": "total",
        "offering": "",
        "instances": report.groups["instances"].sum() if len(report.groups) else 0,
        "cost $": report.cost,
        "planned cost $": report.predicted_cost,
        "jobs": report.results,
        "output tokens": report.output_tokens,
        "tokens/s": report.tokens_per_s,
        "makespan s": report.makespan_s,
        "predicted makespan s": report.predicted_makespan_s,
        "$ per 1M output tokens": report.usd_per_million_tokens,
        "mean queue wait s": report.queue_wait_s,
    }
    return pd.concat([report.groups, pd.DataFrame([total])], ignore_index=True)


def write_report_files(
    report: RunReport, html_path: Path | None, csv_path: Path | None, baselines: bool | None = None
) -> None:
    """Write the HTML and/or CSV report; the HTML has the baselines of a cloud run, and of a run on this machine only
    with `baselines` (what the cloud would cost)."""
    if html_path is not None:
        from costserve.report.html import render_html

        html_path.write_text(render_html(report, not report.local if baselines is None else baselines))
    if csv_path is not None:
        report_csv_frame(report).to_csv(csv_path, index=False)


def write_run_report(store: RunStore, report: RunReport | None = None) -> Path:
    """`report.html` and `report.csv` in the run directory (what `submit` writes at the end), from `report` when the
    caller has built it; returns the HTML path."""
    from costserve.report.data import build_report

    html_path = store.dir / "report.html"
    write_report_files(report if report is not None else build_report(store), html_path, store.dir / "report.csv")
    return html_path
