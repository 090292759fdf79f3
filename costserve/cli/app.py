"""The `costserve` Typer app, its top-level options (`--version`, shell completion) and help panels."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from costserve.cli.help import HelpGroup

app = typer.Typer(
    name="costserve",
    cls=HelpGroup,
    help="Batch LLM inference on the cheapest mix of cloud GPUs that meets a deadline, quality target and budget.",
    epilog="Start here: `costserve submit examples/jobs.jsonl` runs a batch on this machine; "
    "`costserve plan examples/jobs.jsonl --budget 40` shows the cheapest cloud fleet.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from costserve import __version__

        typer.echo(f"costserve {__version__}")
        raise typer.Exit()


@app.callback()
def _top(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_print_version, is_eager=True, help="print costserve's version and exit"),
    ] = None,
) -> None:
    """Batch LLM inference on the cheapest mix of cloud GPUs that meets a deadline, quality target and budget."""
