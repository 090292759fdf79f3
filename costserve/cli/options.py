"""From command-line options to a BatchRequest: durations parsed, values checked, config defaults applied."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from costserve.cli.output import fail
from costserve.cli.terminal import warn

if TYPE_CHECKING:
    from costserve.config import Settings
    from costserve.request import BatchRequest


# --clouds and --available, one definition for `plan`, `submit` and `schedule add` (and the Python API's arguments)
CloudsOption = Annotated[
    Optional[str],  # noqa: UP045 — typer reads the annotation at run time
    typer.Option(
        help="plan only these clouds' offerings, e.g. aws,gcp",
        show_default="the clouds SkyPilot reports enabled, else every cloud in the catalog",
    ),
]
AvailableOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="cap GPUs per type, e.g. H100=2,L4=16", show_default="the catalog's availability"),
]


def cloud_list(value: str | None) -> tuple[str, ...] | None:
    """A --clouds value (`aws,gcp`) as the request's tuple; None when not given."""
    return tuple(value.split(",")) if value else None


def cli_settings() -> Settings:
    """The settings in force (config file, then environment), loaded when a command needs them."""
    from costserve.config import load_settings

    return load_settings()


def build_request(
    settings: Settings,
    deadline: str,
    budget: float | None,
    quality: float,
    model: str | None,
    plan_only: bool = False,
    **fields: Any,
) -> BatchRequest:
    """The BatchRequest of a command's options: durations parsed, values checked (one-line errors), config defaults.

    The model is `model`, else the one the job file names (costserve/jobs/file_model.py); `plan_only` (`plan`): a
    `model` other than the file's is planned with one warning, as a run with --model-override would serve it."""
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
    from pydantic import ValidationError

    from costserve.errors import BadRequestError
    from costserve.jobs.file_model import run_model

    jobs = fields.get("jobs")
    if jobs is not None and Path(jobs).is_file():
        try:
            choice = run_model(Path(jobs), model, plan_only or bool(fields.get("model_override")))
        except BadRequestError as exc:
            fail(str(exc))
        model, said = choice.model, choice.said
        if said is not None and (plan_only or not choice.overrides):  # a run's scan counts an override
            from costserve.cli.output import err_console

            err_console.print(said, markup=False, highlight=False, soft_wrap=True)
    try:
        return BatchRequest(
            deadline_s=deadline_s, budget=budget, quality=quality, model=model or settings.default_model, **fields
        )
    except ValidationError as exc:  # an option the request refuses: its flag and why, in one line
        first = exc.errors()[0]
        flag = "--" + str(first["loc"][0] if first["loc"] else "option").replace("_", "-")
        fail(f"{flag}: {str(first['msg']).removeprefix('Value error, ')}")


def broker_option(ctx: typer.Context, value: str | None) -> str | None:
    """A --broker value in costserve's one URL form (query credentials moved into the userinfo); warns when a password
    was typed on the command line, where `ps` shows it to every user of the machine."""
    from costserve.run.broker_url import has_password, normalize_broker_url

    if value is None:
        return None
    url = normalize_broker_url(value)
    source = ctx.get_parameter_source("broker")  # typer's own copy of click's ParameterSource: compare by name
    if has_password(url) and source is not None and source.name == "COMMANDLINE":
        warn("--broker carries a password on the command line, where `ps` shows it; set COSTSERVE_BROKER instead")
    return url
