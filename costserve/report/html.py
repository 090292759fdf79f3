"""The cost report as one self-contained HTML file: headline figures, tables and matplotlib plots (inline PNG).

No scripts, no external files: the HTML can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import html
import io
import numbers
from typing import TYPE_CHECKING, TypeGuard

from costserve.report.data import RunReport
from costserve.units import format_value

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.cards { display: flex; flex-wrap: wrap; gap: .8em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; min-width: 9em; }
.card .v { font-size: 1.35em; font-weight: 600; } .card .k { color: #666; font-size: .85em; }
.card.off { border-color: #c62828; background: #fdecea; } .card.off .v { color: #c62828; }
table { border-collapse: collapse; font-size: .9em; } td, th { border: 1px solid #ddd; padding: .3em .6em; text-align: right; }
th { background: #f4f4f4; } h3 { font-size: 1em; } .plots img { max-width: 100%; } .muted { color: #777; font-size: .85em; }
"""


def money(x: float | None) -> str:
    """Dollars in costserve's one money format (costserve/durations.format_money), `–` for none."""
    from costserve.durations import format_money

    return "–" if x is None else format_money(x)


def duration(seconds: float | None) -> str:
    """A duration as 1h02m, 5m07s or 42s (costserve's one duration format), `–` for none."""
    from costserve.durations import format_duration

    return "–" if seconds is None else format_duration(seconds)


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _plots(report: RunReport) -> list[tuple[str, str]]:
    """(title, base64 PNG) of each plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    g = report.groups
    if len(g):
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        x = range(len(g))
        ax.bar([i - 0.2 for i in x], g["planned cost $"].fillna(0), width=0.4, label="planned")
        ax.bar([i + 0.2 for i in x], g["cost $"], width=0.4, label="actual")
        ax.set_xticks(list(x), [f"{o}\n({q})" for o, q in zip(g["offering"], g["queue"])], fontsize=8)
        ax.set_ylabel("$")
        ax.legend()
        ax.set_title("cost by fleet group")
        out.append(("Cost by fleet group", _png(fig)))
        plt.close(fig)
    t = report.timeline
    if len(t):
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        bin_s = max(5.0, float(t["t"].max()) / 40)
        binned = t.assign(bin=(t["t"] // bin_s) * bin_s).groupby("bin")["tokens"].sum() / bin_s
        ax.step(binned.index / 60, binned.values, where="post", label="output tokens/s")
        if report.predicted_makespan_s:
            planned_rate = float(report.groups["planned tokens/s"].fillna(0).sum())
            ax.axhline(planned_rate, color="grey", linestyle="--", label="planned (max_tokens)")
        ax.set_xlabel("minutes since queued")
        ax.set_ylabel("output tokens/s")
        ax.legend()
        ax.set_title("throughput over time")
        out.append(("Throughput over time", _png(fig)))
        plt.close(fig)
    if report.predicted_cost is not None and report.predicted_makespan_s:
        fig, axes = plt.subplots(1, 2, figsize=(6.5, 3.0))
        for ax, (label, pred, act) in zip(
            axes,
            [
                ("cost $", report.predicted_cost, report.cost),
                ("makespan (min)", report.predicted_makespan_s / 60, report.makespan_s / 60),
            ],
        ):
            ax.bar(["predicted", "actual"], [pred, act], color=["#9ab", "#357"])
            ax.set_title(label)
        fig.tight_layout()
        out.append(("Predicted vs actual", _png(fig)))
        plt.close(fig)
    return out


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return '<p class="muted">none</p>'
    import pandas as pd

    shown = pd.DataFrame({c: [format_value(str(c), v) for v in frame[c]] for c in frame.columns})
    return shown.to_html(index=False, border=0)


def _number(value: object) -> TypeGuard[float]:
    """Whether a cell holds a number (numpy's too; not None, not NaN)."""
    return isinstance(value, numbers.Real) and value == value


GROUP_ROWS = [
    ("instances", "planned instances", "instances"),
    ("instance-hours", "planned instance-hours", "instance-hours"),
    ("$/h", "$/h", "$/h"),
    ("cost $", "planned cost $", "cost $"),
    ("output tokens", "planned output tokens", "output tokens"),
    ("output tokens/s", "planned tokens/s", "tokens/s"),
    ("jobs", None, "jobs"),
    ("GPU-hours", None, "GPU-hours"),
]


def _group_table(row: pd.Series) -> str:
    """One fleet group as rows of (metric, planned, actual)."""
    import pandas as pd

    from costserve.units import format_ratio

    rows = []
    for label, planned_column, actual_column in GROUP_ROWS:
        planned, actual = (row[planned_column] if planned_column else None), row[actual_column]
        ratio = float(planned) / float(actual) if _number(planned) and _number(actual) and float(actual) > 0 else None
        rows.append(
            {
                "metric": label,
                "planned": format_value(label, planned),
                "actual": format_value(label, actual),
                "predicted ÷ actual": "–" if ratio is None else format_ratio(ratio),
            }
        )
    frame = pd.DataFrame(rows)
    return (
        f"<h3>group {row['group']}: {html.escape(str(row['offering']))} (queue {html.escape(str(row['queue']))})</h3>"
        + _table(frame)
    )


def _prediction(report: RunReport) -> list[str]:
    """Predicted ÷ actual cards (red when off by more than ±25%) and the likely causes of a miss."""
    from costserve.report.accuracy import TOLERANCE, likely_causes, prediction_checks
    from costserve.units import format_ratio

    checks = [c for c in prediction_checks(report) if c.ratio is not None]
    if not checks:
        return []
    cards = "".join(
        f"<div class='card{' off' if c.off else ''}'><div class='v'>{format_ratio(c.ratio or 0.0)}</div>"
        f"<div class='k'>{html.escape(c.label)}: predicted ÷ actual</div></div>"
        for c in checks
    )
    causes = "".join(f"<li>{html.escape(cause)}</li>" for cause in likely_causes(report))
    return [
        f"<h2>Prediction vs this run (on target within ±{TOLERANCE:.0%})</h2><div class='cards'>{cards}</div>",
        f"<ul>{causes}</ul>" if causes else "",
    ]


def render_html(report: RunReport, baselines: bool = True) -> str:
    """The whole report page; the baselines table with `baselines` (a run on this machine: what the cloud would cost)."""
    import pandas as pd

    state = "finished" if report.finished else "in progress"
    cards = [
        ("jobs", f"{report.results:,} / {report.jobs:,}"),
        ("failed", f"{report.failed:,}"),
        ("cost", money(report.cost)),
        ("predicted cost", money(report.predicted_cost)),
        ("$ per 1M output tokens", money(report.usd_per_million_tokens)),
        ("output tokens", f"{report.output_tokens:,}"),
        ("output tokens/s", format_value("output tokens/s", report.tokens_per_s)),
        ("makespan", duration(report.makespan_s)),
        ("predicted makespan", duration(report.predicted_makespan_s)),
        ("mean queue wait", duration(report.queue_wait_s)),
    ]
    body = [
        f"<h1>costserve run {html.escape(report.run_id)} <span class='muted'>({state}, {html.escape(report.model)})</span></h1>",
        "<div class='cards'>"
        + "".join(
            f"<div class='card'><div class='v'>{html.escape(v)}</div><div class='k'>{html.escape(k)}</div></div>"
            for k, v in cards
        )
        + "</div>",
        *_prediction(report),
        *(
            [
                "<h2>Deadline steering</h2><ul>"
                + "".join(f"<li>{html.escape(s)}</li>" for s in report.steering)
                + "</ul>"
            ]
            if report.steering
            else []
        ),
        "<h2>Fleet: planned vs actual</h2>",
        *[_group_table(row) for _, row in report.groups.iterrows()],
        *(
            [
                f"<h2>{'What the cloud would cost' if report.local else 'Baselines'} for the same batch (predicted)</h2>",
                _table(report.baselines),
            ]
            if baselines
            else []
        ),
        "<h2>Totals</h2>",
        _table(pd.DataFrame([(k, format_value(k, v)) for k, v in report.totals().items()], columns=["", "value"])),
        "<div class='plots'>",
    ]
    for title, png in _plots(report):
        body.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>")
    body.append(
        "</div><p class='muted'>Planned output tokens use each job's max_tokens (an upper bound); "
        "cost is instances × $/h × uptime.</p>"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>costserve run {html.escape(report.run_id)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def render_trend_html(frame: pd.DataFrame, since: str) -> str:
    """Runs over a period (the nightly trend): cost and makespan per run beside their predictions, $/1M output tokens,
    with a plot of each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.0))
    when = pd.to_datetime(frame["created"])
    for ax, column, scale, title in zip(
        axes,
        ["cost $", "makespan s", "$ per 1M output tokens"],
        [1, 3600, 1],
        ["cost ($)", "makespan (h)", "$ per 1M output tokens"],
    ):
        ax.plot(when, frame[column].astype(float) / scale, marker="o", label="actual")
        if f"predicted {column}" in frame:  # predicted beside actual: calibration closes the gap night by night
            predicted = frame[f"predicted {column}"].astype(float) / scale
            ax.plot(when, predicted, marker="x", linestyle="--", label="predicted")
            ax.legend(fontsize=7)
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    png = _png(fig)
    plt.close(fig)
    body = (
        f"<h1>costserve runs in the last {html.escape(since)}</h1>"
        f"<div class='cards'><div class='card'><div class='v'>{money(float(frame['cost $'].sum()))}</div>"
        f"<div class='k'>total cost</div></div><div class='card'><div class='v'>{int(frame['jobs'].sum()):,}</div>"
        f"<div class='k'>jobs</div></div><div class='card'><div class='v'>{len(frame)}</div><div class='k'>runs</div></div></div>"
        f"<h2>Trend</h2><div class='plots'><img alt='trend' src='data:image/png;base64,{png}'></div>"
        f"<h2>Runs</h2>{_table(frame)}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>costserve runs, last {html.escape(since)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )
