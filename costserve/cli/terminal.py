"""The terminal: rich consoles for results (stdout) and progress (stderr), and the Notices that write to them.

`costserve/notices.py` is what run orchestration reports through; `TerminalNotices` is what
the CLI installs there at start-up, so progress lines, spinners for long steps and the live
view of a running batch appear on the terminal and nowhere else prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from costserve.durations import format_duration, format_money
from costserve.notices import Tick

# Piped output (files, CI logs) gets wide tables instead of rich's 80-column default, unless COLUMNS says otherwise.
console = Console() if Console().is_terminal or os.environ.get("COLUMNS") else Console(width=160)
err_console = Console(stderr=True)


def say(message: str) -> None:
    """One plain line on stdout (no rich markup or highlighting)."""
    console.print(message, markup=False, highlight=False)


def warn(message: str) -> None:
    """One plain `costserve: ...` line on stderr."""
    err_console.print(f"costserve: {message}", markup=False, highlight=False, soft_wrap=True)


@contextmanager
def counted_progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A transient bar on stderr for a long step counted in units (layers, timing points); yields the
    `progress(done, total)` callback the step reports through."""
    progress = Progress(
        TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err_console, transient=True
    )
    with progress:
        task = progress.add_task(what, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


class _BatchProgress(Progress):
    """A progress bar with a status table under it (rich's documented get_renderables hook).

    `status` is set from the polling loop's Tick: rich renders from its own refresh thread,
    which must not touch the loop's SQLite connection.
    """

    status: RenderableType | None = None

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.status is not None:
            yield self.status


class TerminalNotices:
    """Notices on the terminal: lines and spinners on stdout, warnings and the live view on stderr."""

    def say(self, message: str) -> None:
        """One plain line on stdout."""
        say(message)

    def warn(self, message: str) -> None:
        """One `costserve: ...` line on stderr."""
        warn(message)

    def step(self, what: str) -> AbstractContextManager[None]:
        """A spinner with `what` while the step runs."""
        return console.status(what)  # type: ignore[return-value]  # rich's Status is a context manager of itself, not of None

    @contextmanager
    def live(self, total: int) -> Iterator[Callable[[Tick], None]]:
        """Jobs done/total, output tokens/s, $ spent and projected, ETA, and the backend's status table; without a
        terminal (a log, CI) one plain line per 10% of the jobs instead."""
        if not err_console.is_terminal:
            yield _PlainProgress(total)
            return
        progress = _BatchProgress(
            TextColumn("generating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[money]}"),
            TextColumn("{task.fields[eta]}"),
            console=err_console,
            transient=True,
        )
        with progress:
            task = progress.add_task("jobs", total=total, rate="", money="", eta="")

            def update(tick: Tick) -> None:
                progress.status = tick.status
                progress.update(
                    task,
                    completed=tick.done,
                    rate=f"{tick.tokens_per_s:.1f} tokens/s",
                    money=_money(tick),
                    eta=_eta(tick),
                )

            yield update


def _money(tick: Tick) -> str:
    return f"{format_money(tick.spent)} spent" + (
        f", {format_money(tick.projected)} projected" if tick.projected is not None else ""
    )


def _eta(tick: Tick) -> str:
    return f"ETA {format_duration(tick.eta_s)}" if tick.eta_s is not None else "ETA –"


class _PlainProgress:
    """The live view as plain lines on stderr: one each time another 10% of the jobs is done."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.shown = -1  # the last tenth printed

    def __call__(self, tick: Tick) -> None:
        tenth = tick.done * 10 // max(self.total, 1)
        if tenth > self.shown:
            self.shown = tenth
            err_console.print(
                f"generating: {tick.done:,}/{self.total:,} jobs ({tick.done / max(self.total, 1):.0%}), "
                f"{tick.tokens_per_s:.1f} tokens/s, {_money(tick)}, {_eta(tick)}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
