"""Every command's --help shows its defaults, plain metavars and an example; --version and durations behave."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main

from costserve import __version__
from costserve.cli import app

ROOT = typer.main.get_command(app)


def _commands(group: Any = ROOT, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            found += _commands(cmd, path + (name,))
        else:
            found.append((path + (name,), cmd))
    return found


COMMANDS = _commands()


def _flat(text: str) -> str:
    """Help text without the box drawing and line wrapping, so a wrapped default reads as one string."""
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text))


def test_every_command_is_listed() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"submit", "plan", "runs", "status", "results", "report", "resume", "cancel", "validate", "worker",
            "schedule add", "catalog offerings"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_shows_every_default_and_an_example(cli, path: tuple[str, ...]) -> None:
    cmd = dict(COMMANDS)[path]
    result = cli.invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    for param in cmd.params:
        if getattr(param, "is_flag", False) or param.name == "help":
            continue
        if isinstance(param.show_default, str):
            assert f"[default: ({_flat(param.show_default).strip()})]" in text, (param.name, text)
        elif param.default is not None:
            default = param.default.value if hasattr(param.default, "value") else param.default
            assert f"[default: {default}]" in text, (param.name, text)
        elif not param.required:  # an optional value with no default must say what happens without it
            assert param.help, param.name
    assert "Example: costserve" in text or "Example: COSTSERVE_" in text
    for noise in ("<bool>", "<path>", "<str>", "<int", "<float", "list["):
        assert noise not in text, (noise, text)
    assert not re.search(r"\{[A-Za-z]+\}", text), text  # typer's `{jobs}` for a required argument
    assert "[config" not in text  # what rich markup used to eat is now in the [default: ...] note


def test_top_level_help_groups_commands_and_shows_version(cli) -> None:
    text = _flat(cli.invoke(app, ["--help"], terminal_width=200).output)
    for panel in ("Run a batch", "Inspect runs", "Plan", "Engine", "Schedule", "Catalog"):
        assert panel in text
    assert "--install-completion" in text and "--version" in text
    version = cli.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == f"costserve {__version__}"


def test_a_duration_needs_a_unit(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "hi"}\n')
    result = cli.invoke(app, ["plan", str(jobs), "--deadline", "8"])
    assert result.exit_code == 2
    assert result.output.strip() == "costserve: --deadline: '8' has no unit: write e.g. 8h (hours), 8m (minutes) or 8s (seconds)"
