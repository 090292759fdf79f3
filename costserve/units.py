"""One set of units for every output: people read `2h05m`, `$12.35`, `0.55×`; `--json` reads snake_case keys whose
suffix names the base unit (`makespan_s`, `cost_usd`, `price_usd_per_hour`, `tokens_per_s`) and ISO-8601 times.

A table column's label carries its unit the way people write it (`makespan s`, `cost $`, `$/h`, `tokens/s`); the
same label gives the human cell (format_cell) and the JSON key (json_key), so the two views cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from costserve.durations import format_duration, format_money

if TYPE_CHECKING:
    import pandas as pd

# Written out in JSON keys, longest first so `$/h` wins over `$`
_KEY_WORDS = (
    ("$/h", " usd per hour "),
    ("/s", " per s "),
    ("$", " usd "),
    ("÷", " over "),
    ("/", " over "),
    ("1M", "million"),
    ("%", " pct "),
)


def json_key(label: str) -> str:
    """The `--json` key of a column label: snake_case with its unit spelled out (`cost $` → `cost_usd`, `$/h` →
    `usd_per_hour`, `makespan s` → `makespan_s`, `GPU-hours` → `gpu_hours`, `occupancy/planned batch` →
    `occupancy_over_planned_batch`). A key already in snake_case is returned as it is."""
    text = label
    for written, spelled in _KEY_WORDS:
        text = text.replace(written, spelled)
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def json_keys(row: Mapping[str, object]) -> dict[str, object]:
    """`row` with every key made a json_key (values as they are)."""
    return {json_key(k): v for k, v in row.items()}


def column_unit(label: str) -> str | None:
    """The unit a column label names: `s` (a duration), `$`, `$/h`, or None (a count, a name, a rate of tokens)."""
    if label.endswith("$/h"):
        return "$/h"
    if label.endswith(" $") or label.startswith("$ ") or label == "$":
        return "$"
    if label.endswith(" s") and "/" not in label:
        return "s"
    return None


def format_cell(label: str, value: float) -> str | None:
    """A number in the column `label` as people read it everywhere (`2m11s`, `$0.0123`, `$1.20/h`), or None when
    the column has no such unit and the caller's number format applies."""
    unit = column_unit(label)
    if unit == "s":
        return format_duration(value)
    if unit == "$":
        return format_money(value)
    if unit == "$/h":
        return f"{format_money(value)}/h"
    return None


def format_number(value: float) -> str:
    """A number without a unit (a count, tokens/s): whole numbers grouped (`12,345`), others to 4 significant digits."""
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"


def format_value(label: str, value: object) -> str:
    """One table cell of the column (or row) `label` in every human view (terminal, HTML): `–` for none, `yes`/`no`,
    durations, money and prices by format_cell, other numbers by format_number, text as it is."""
    value = value.item() if hasattr(value, "item") else value
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return format_cell(label, value) or format_number(value)
    return str(value)


def format_ratio(ratio: float) -> str:
    """A ratio of two like figures, one way everywhere: `0.55×`, `1.8×`, `12×`."""
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.0f}×"


def iso_time(epoch_s: float | None) -> str | None:
    """An epoch time (s) as ISO-8601 UTC (`2026-12-06T23:10:04Z`), the one time format of `--json`; None stays None."""
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table's rows as `--json` and the Python API give them: one object per row, json_key names, NaN as null."""
    import json

    rows: list[dict[str, Any]] = json.loads(frame.to_json(orient="records")) if len(frame) else []
    return [{json_key(str(k)): v for k, v in row.items()} for row in rows]
