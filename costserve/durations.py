"""Human durations: `8h`, `90m`, `1d12h` in; `4s`, `2m11s`, `2h05m` out — one format in every view."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """Seconds in `text` (`8h`, `1h30m`, `45m`, `2d`, `30s`). A unit is required: a bare number raises a ValueError
    that suggests one, as do other unreadable texts."""
    raw = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        raise ValueError(f"{text!r} has no unit: write e.g. {raw}h (hours), {raw}m (minutes) or {raw}s (seconds)")
    parts = _PART.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        raise ValueError(f"{text!r} is not a duration (e.g. 8h, 90m, 1d12h)")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


def format_duration(seconds: float, whole: bool = True) -> str:
    """`seconds` for people, in its two largest units: `4s`, `2m11s`, `11m05s`, `2h05m`, `1d02h` (`0.4s` below 1 s).

    With `whole=False` the text is exact and parse_duration reads it back (`1h30m15s`), for command lines."""
    if not whole:
        return _exact(seconds)
    if seconds < 1:
        return f"{seconds:.1f}s" if seconds > 0.05 else "0s"
    rest = int(round(seconds))
    parts: list[tuple[float, str]] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size or parts:
            parts.append((rest // size, unit))
            rest %= size
        if len(parts) == 2:
            break
    head = f"{parts[0][0]}{parts[0][1]}"
    return head if len(parts) == 1 or parts[1][0] == 0 else f"{head}{parts[1][0]:02d}{parts[1][1]}"


def _exact(seconds: float) -> str:
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def format_money(dollars: float) -> str:
    """`dollars` as `$`: whole dollars from $100 (`$1,234`), cents from $1 (`$12.35`), three significant digits
    below but never fewer than cents (`$0.0123`, `$0.30`), `<$0.0001` for a sliver, `$0` for nothing."""
    if dollars == 0:
        return "$0"
    sign = "-" if dollars < 0 else ""
    value = abs(dollars)
    if value >= 100:
        return f"{sign}${value:,.0f}"
    if value >= 1:
        return f"{sign}${value:,.2f}"
    if value < 1e-4:
        return f"{sign}<$0.0001"
    digits = f"{value:.3g}"
    return f"{sign}${value:.2f}" if len(digits.partition(".")[2]) < 2 else f"{sign}${digits}"
