"""How `--help` looks: plain metavars, defaults shown, commands grouped in panels, an example per command.

Typer shows every parameter's Python type as `<path>`, `<bool>` or `<list[Path]>`; people read
`PATH`, `INT` and nothing at all after a flag, as in the help of `git` or `sky`. Typer has no
setting for that, so HelpCommand fills in the metavars click already knows how to show before
the help is drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

RUN, INSPECT, PLAN, CATALOG, SCHEDULE, ENGINE = "Run a batch", "Inspect runs", "Plan", "Catalog", "Schedule", "Engine"

# --model, the same everywhere (plan, submit, run-local, schedule add, worker, ...)
MODEL_HELP = "catalog model name (`costserve catalog models`), or a local HF model directory or .gguf file"
DEFAULT_MODEL = "SmolLM2-135M, the embedded model; config default_model"

_TYPE_NAMES = {"path": "PATH", "int": "INT", "float": "FLOAT", "str": "TEXT", "text": "TEXT"}


def _type_label(param: Any, ctx: Any) -> str:
    """A parameter's value type in capitals (`PATH`, `INT`, `TEXT`; a choice as `aws|skypilot`)."""
    label = param.display_type(ctx).strip("<>").removesuffix(" range")
    label = label.removeprefix("list[").removesuffix("]")
    return _TYPE_NAMES.get(label.lower(), label if "|" in label else label.upper())


def _plain_metavars(params: list[Any], ctx: Any) -> None:
    """Arguments read as their name (`JOBS`) with their type beside it; options as their type; flags as nothing."""
    for param in params:
        if param.param_type_name == "argument":  # its name column and usage: JOBS; its type column: PATH
            kind = _type_label(param, ctx)
            param.metavar = param.name.upper() + ("..." if param.nargs != 1 else "")
            param.display_type_rich = lambda ctx=None, kind=kind: kind
            param._usage_display_name = lambda p=param: p.metavar if p.required else f"[{p.metavar}]"
        elif param.metavar is None:
            param.metavar = "" if getattr(param, "is_flag", False) else _type_label(param, ctx)


class HelpCommand(TyperCommand):
    """A command whose help shows plain metavars (see the module docstring)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_metavars(self.get_params(ctx), ctx)
        super().format_help(ctx, formatter)


class HelpGroup(TyperGroup):
    """A command group whose help shows plain metavars (see the module docstring)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_metavars(self.get_params(ctx), ctx)
        super().format_help(ctx, formatter)


def command(app: typer.Typer, panel: str, example: str, name: str | None = None) -> Callable[[Callable[..., Any]], Any]:
    """`@app.command` in `panel` of the top-level help, with `example` (a shell line) under the options."""
    from rich.markup import escape

    return app.command(name, cls=HelpCommand, rich_help_panel=panel, epilog=f"Example: {escape(example)}")
