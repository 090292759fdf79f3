"""How good a run's plan was: predicted ÷ actual for cost, makespan and output tokens/s, and why it missed.

A plan is a promise; the report says how well it was kept. A figure is off target when the
prediction is more than TOLERANCE away from what happened (predicted ÷ actual outside
1 ± 0.25). Each miss comes with the causes the run's own record supports: start-up that the
plan did not count (the time from queueing to the first shard starting), fewer output tokens
than the plan's max_tokens upper bound, or replicas that produced tokens at another rate than
planned while they worked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from costserve.durations import format_duration
from costserve.units import format_ratio


class RunReport(Protocol):
    """The figures of a run this judges (costserve/report/data.RunReport has them; $, s, tokens)."""

    jobs: int
    results: int
    groups: Any  # a pandas DataFrame: one row per fleet group (planned batch, steady occupancy, ...)
    output_tokens: int
    cost: float
    predicted_cost: float | None
    makespan_s: float
    predicted_makespan_s: float | None
    planned_output_tokens: float | None
    first_start_s: float | None
    planned_startup_s: float

    @property
    def tokens_per_s(self) -> float: ...


TOLERANCE = 0.25  # predicted ÷ actual within 1 ± 0.25 is on target


@dataclass(frozen=True)
class PredictionCheck:
    """One figure of a run: what the plan predicted and what happened (same unit: $, s or output tokens/s)."""

    metric: str
    predicted: float
    actual: float

    @property
    def label(self) -> str:
        """The figure's name without its unit, as sentences and cards say it (`cost`, `makespan`, `output tokens/s`)."""
        return self.metric.removesuffix(" $").removesuffix(" s")

    @property
    def ratio(self) -> float | None:
        """Predicted ÷ actual (None when nothing happened yet)."""
        return self.predicted / self.actual if self.actual > 0 else None

    @property
    def off(self) -> bool:
        """Whether the prediction missed by more than TOLERANCE."""
        return self.ratio is not None and abs(self.ratio - 1) > TOLERANCE

    def as_json(self) -> dict[str, Any]:
        """The check as JSON-ready values."""
        from costserve.units import json_key

        return {
            "metric": json_key(self.metric),
            "predicted": self.predicted,
            "actual": self.actual,
            "predicted_over_actual": None if self.ratio is None else float(f"{self.ratio:.4g}"),
            "off": self.off,
        }


def prediction_checks(report: RunReport) -> list[PredictionCheck]:
    """Cost ($), makespan (s) and output tokens/s of the whole run, predicted vs actual (none without a plan)."""
    out = []
    if report.predicted_cost is not None:
        out.append(PredictionCheck("cost $", report.predicted_cost, report.cost))
    if report.predicted_makespan_s is not None:
        out.append(PredictionCheck("makespan s", report.predicted_makespan_s, report.makespan_s))
        if report.planned_output_tokens and report.predicted_makespan_s > 0:
            out.append(
                PredictionCheck(
                    "output tokens/s", report.planned_output_tokens / report.predicted_makespan_s, report.tokens_per_s
                )
            )
    return out


def occupancy_warnings(report: RunReport) -> list[str]:
    """One line per group whose replicas ran below LOW_OCCUPANCY of their planned batch in steady state (or were never
    full although the run had the jobs to fill them)."""
    from costserve.report.occupancy import LOW_OCCUPANCY

    lines = []
    for _, g in report.groups.iterrows() if "planned batch" in report.groups else ():
        planned, steady = g["planned batch"], g["steady occupancy"]
        if planned is None or planned != planned:  # the broker node, or no plan
            continue
        if steady is None or steady != steady:
            if (
                g["peak occupancy"] == g["peak occupancy"]
                and g["peak occupancy"] is not None
                and report.jobs >= planned
            ):
                lines.append(
                    f"batch: group {g['queue']} never had its planned batch of {int(planned)} in flight "
                    f"(at most {int(g['peak occupancy'])})"
                )
        elif steady < LOW_OCCUPANCY * planned:
            lines.append(
                f"batch: group {g['queue']} ran {steady:.1f} sequences in flight in steady state against the "
                f"{int(planned)} planned ({steady / planned:.0%})"
            )
    return lines


def likely_causes(report: RunReport) -> list[str]:
    """Why the run's figures differ from the plan's, each cause in one line (empty when every figure is on target)."""
    if not any(check.off for check in prediction_checks(report)):
        return []
    causes = occupancy_warnings(report)
    startup, planned_startup = report.first_start_s, report.planned_startup_s
    if startup is not None and report.makespan_s > 0 and startup - planned_startup > TOLERANCE * report.makespan_s:
        causes.append(
            f"start-up: workers starting and loading the model took about {format_duration(startup)}, "
            f"{startup / report.makespan_s:.0%} of the makespan; the plan counted "
            f"{format_duration(planned_startup) if planned_startup else 'none'}"
        )
    planned = report.planned_output_tokens
    if planned and report.results == report.jobs and report.output_tokens < (1 - TOLERANCE) * planned:
        causes.append(
            f"output: the jobs wrote {report.output_tokens:,} tokens, {report.output_tokens / planned:.0%} of the "
            f"{planned:,.0f} the plan costed"
        )
    rates = once_started(report)
    if rates is not None and abs(rates[0] / rates[1] - 1) > TOLERANCE:
        measured, promised = rates
        causes.append(
            f"throughput: once started, the fleet made {measured:,.1f} output tokens/s against the "
            f"{promised:,.1f} planned ({format_ratio(measured / promised)})"
        )
    return causes or ["none found in the run's record"]


def once_started(report: RunReport) -> tuple[float, float] | None:
    """Output tokens/s once the fleet had started, (measured, planned): the tokens over the makespan less its
    start-up, and the plan's tokens over its makespan less the start-up it counted; None when either is unknown. The
    report's totals show these same two figures."""
    working_s = report.makespan_s - (report.first_start_s or 0.0)
    planned_work_s = (report.predicted_makespan_s or 0.0) - report.planned_startup_s
    planned = report.planned_output_tokens
    if not planned or planned_work_s <= 0 or working_s <= 0 or not report.output_tokens:
        return None
    return report.output_tokens / working_s, planned / planned_work_s
