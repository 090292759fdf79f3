"""The terminal a run talks to: rich consoles for progress and results (stdout) and live views (stderr).

Run orchestration reports progress here; only `costserve/cli/` ends the process.
"""

from __future__ import annotations

from rich.console import Console

# Piped output (files, CI logs) gets wide tables instead of rich's 80-column default.
console = Console() if Console().is_terminal else Console(width=160)
err_console = Console(stderr=True)


def say(message: str) -> None:
    """One plain line on stdout (no rich markup or highlighting)."""
    console.print(message, markup=False, highlight=False)


def warn(message: str) -> None:
    """One plain `costserve: ...` line on stderr."""
    err_console.print(f"costserve: {message}", markup=False, highlight=False, soft_wrap=True)
