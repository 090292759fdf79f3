"""Summary of a job file: counts per model and endpoint, and input/output token distributions.

Memory stays bounded however long the file is: lengths are kept as histograms
(length -> count), whose size is bounded by the largest length, not by the job count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from costserve.jobs.schema import Job

if TYPE_CHECKING:
    import pandas as pd


def _histogram_quantile(hist: pd.Series, q: float) -> int:
    """Nearest-rank q-quantile of a length histogram (index: length, values: counts)."""
    cumulative = hist.cumsum()
    rank = q * cumulative.iloc[-1]
    return int(cumulative.index[(cumulative >= rank).argmax()])


@dataclass
class JobFileSummary:
    """Running totals over the jobs and rejected lines of one or more job files."""

    jobs: int = 0
    bad_lines: int = 0
    models: Counter[str] = field(default_factory=Counter)
    endpoints: Counter[str] = field(default_factory=Counter)
    input_tokens: Counter[int] = field(default_factory=Counter)
    output_tokens: Counter[int] = field(default_factory=Counter)

    def add(self, job: Job, default_model: str) -> None:
        """Count one valid job; input length is the chars/4 estimate (tokens)."""
        self.jobs += 1
        self.models[job.model or f"{default_model} (default)"] += 1
        self.endpoints[job.endpoint or "completion"] += 1  # Job sets it: never None here
        self.input_tokens[job.estimated_input_tokens()] += 1
        self.output_tokens[job.max_tokens] += 1

    def token_table(self) -> pd.DataFrame:
        """Distribution of input tokens (estimated) and requested output tokens.

        Rows: `input tokens`, `max output tokens`; columns: count, mean, p50, p90, max, total (tokens).
        """
        import pandas as pd

        rows = {}
        for name, counts in (("input tokens (est.)", self.input_tokens), ("max output tokens", self.output_tokens)):
            if not counts:
                continue
            hist = pd.Series(counts, dtype="int64").sort_index()
            total = int((hist.index.to_numpy() * hist.to_numpy()).sum())
            n = int(hist.sum())
            rows[name] = {
                "count": n,
                "mean": round(total / n, 1),
                "p50": _histogram_quantile(hist, 0.5),
                "p90": _histogram_quantile(hist, 0.9),
                "max": int(hist.index.max()),
                "total": total,
            }
        table = pd.DataFrame.from_dict(rows, orient="index")
        return table.astype({c: "int64" for c in ("count", "p50", "p90", "max", "total")}) if rows else table
