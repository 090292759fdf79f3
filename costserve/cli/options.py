"""From command-line options to a BatchRequest: durations parsed, values checked, config defaults applied."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from costserve.cli.output import fail

if TYPE_CHECKING:
    from costserve.config import Settings
    from costserve.request import BatchRequest


def cli_settings() -> "Settings":
    """The settings in force (config file, then environment), loaded when a command needs them."""
    from costserve.config import load_settings

    return load_settings()


def build_request(settings: "Settings", deadline: str, budget: float | None, quality: float, model: str | None,
                  **fields: Any) -> "BatchRequest":
    """The BatchRequest of a command's options: durations parsed, values checked (one-line errors), config defaults."""
    from costserve.durations import parse_duration
    from costserve.request import BatchRequest

    try:
        deadline_s = parse_duration(deadline)
    except ValueError as exc:
        fail(f"--deadline: {exc}")
    if budget is not None and budget <= 0:
        fail("--budget must be more than $0")
    if not 0.0 <= quality <= 1.0:
        fail("--quality is a fraction of the 16-bit model's quality, between 0 and 1 (e.g. 0.99)")
    return BatchRequest(deadline_s=deadline_s, budget=budget, quality=quality, model=model or settings.default_model,
                        **fields)
