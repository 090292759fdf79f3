"""The crontab and systemd examples in deploy/examples name costserve options that exist and a valid schedule."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.main import get_command

from costserve.cli import app
from costserve.schedule.store import parse_cron

EXAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "examples"


def _costserve_argv(line: str) -> list[str]:
    words = shlex.split(line.split(">>")[0])
    start = next(i for i, w in enumerate(words) if w.endswith("/costserve"))
    return words[start + 1 :]


def _commands() -> list[tuple[str, list[str]]]:
    out = []
    for path in sorted(EXAMPLES.iterdir()):
        for line in path.read_text().splitlines():
            if line.startswith("#") or "bin/costserve" not in line:
                continue
            if path.name == "crontab.example":
                parse_cron(" ".join(line.split()[:5]))  # the cron fields are valid
                line = " ".join(line.split()[5:])
            out.append((path.name, _costserve_argv(line.removeprefix("ExecStart="))))
    return out


@pytest.mark.parametrize("name, argv", _commands())
def test_example_command_lines_parse(name: str, argv: list[str]) -> None:
    sub = get_command(app).commands.get(argv[0])  # type: ignore[attr-defined]
    assert sub is not None, f"{name}: no command {argv[0]!r}"
    sub.make_context(argv[0], argv[1:])  # raises on an unknown option or a missing argument
    if argv[0] == "submit":
        assert "--yes" in argv, f"{name}: an unattended submit needs --yes"


def test_every_example_is_checked() -> None:
    assert {name for name, _ in _commands()} == {"crontab.example", "costserve-scheduler.service", "costserve-nightly.service"}
