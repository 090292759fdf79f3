"""How run orchestration tells the user what it is doing, without printing: the Notices protocol.

`run/`, `planning/` and the rest report progress lines, warnings, long steps and the live
view of a running batch through `say`, `warn`, `step` and `live` below. They reach whatever
`Notices` is installed: nothing by default (library use, tests that call `run/` directly),
and the terminal (`cli/terminal.py`) once the CLI starts, as a logging handler is installed
by the program rather than by the code that logs. Only `costserve/cli/` writes to the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Tick:
    """One poll of a running batch: jobs done of total, output tokens/s, $ spent and projected, ETA (s), status table."""

    done: int
    total: int
    tokens_per_s: float
    spent: float
    projected: float | None
    eta_s: float | None
    status: Any  # a rich renderable (the backend's per-worker or per-group table)


class Notices(Protocol):
    """Where progress goes: the terminal under the CLI, nowhere otherwise."""

    def say(self, message: str) -> None:
        """One plain line of progress."""

    def warn(self, message: str) -> None:
        """One plain line about something that went wrong but does not stop the command."""

    def step(self, what: str) -> AbstractContextManager[None]:
        """A long step (launching a cluster, tearing a fleet down) in progress while the context is open."""

    def live(self, total: int) -> AbstractContextManager[Callable[[Tick], None]]:
        """The live view of a batch of `total` jobs; yields the function each poll calls with its Tick."""


class Quiet:
    """Notices that go nowhere: the default until the CLI installs the terminal."""

    def say(self, message: str) -> None:
        """Dropped."""

    def warn(self, message: str) -> None:
        """Dropped."""

    def step(self, what: str) -> AbstractContextManager[None]:
        """Nothing shown."""
        return nullcontext()

    @contextmanager
    def live(self, total: int) -> Iterator[Callable[[Tick], None]]:
        """Nothing shown."""
        yield lambda tick: None


_installed: list[Notices] = [Quiet()]


def install(notices: Notices) -> None:
    """Send every later notice to `notices` (the CLI installs the terminal at start-up)."""
    _installed[0] = notices


def say(message: str) -> None:
    """One plain line of progress."""
    _installed[0].say(message)


def warn(message: str) -> None:
    """One plain line about a problem that does not stop the command."""
    _installed[0].warn(message)


def step(what: str) -> AbstractContextManager[None]:
    """A long step in progress (a spinner on the terminal) while the context is open."""
    return _installed[0].step(what)


def live(total: int) -> AbstractContextManager[Callable[[Tick], None]]:
    """The live view of a running batch of `total` jobs; yields the per-poll update function."""
    return _installed[0].live(total)
