"""`costserve calibration show|reset`: what finished runs measured, and how plans of this machine use it."""

from __future__ import annotations

from typing import Annotated

import typer

from costserve.cli.commands_inspect import JSON_FLAG
from costserve.cli.help import PLAN, HelpGroup, command
from costserve.cli.output import console, emit_json, frame_table, json_mode, one_line_errors
from costserve.units import iso_time, json_keys

calibration_app = typer.Typer(
    help="Show or forget what finished runs measured (start-up, work vs the model) for later plans.",
    no_args_is_help=True,
    cls=HelpGroup,
    epilog="Example: costserve calibration show",
)


@command(calibration_app, PLAN, "costserve calibration show", name="show")
def show(json_out: Annotated[bool, JSON_FLAG] = False) -> None:
    """Every finished local run's start-up (s) and work factor (measured ÷ modelled work time), newest first.

    Plans of the same machine, model and replica weigh the last 8 runs, recent ones most."""
    from costserve.store.calibration import calibration_path, calibration_rows

    with json_mode(json_out), one_line_errors():
        rows = calibration_rows()
        if json_out:
            emit_json([json_keys(row | {"at": iso_time(float(row["at"]))}) for row in rows])  # type: ignore[arg-type]
            return
        if not rows:
            console.print(f"no run has calibrated this home yet ({calibration_path()}); a finished local run does")
            return
        import pandas as pd

        frame = pd.DataFrame(rows)
        frame["at"] = (
            pd.to_datetime(frame["at"], unit="s", utc=True).dt.tz_convert(None).dt.strftime("%Y-%m-%d %H:%M UTC")
        )
        console.print(frame_table(frame, f"calibration ({calibration_path()})"))


@command(calibration_app, PLAN, "costserve calibration reset --yes", name="reset")
def reset(yes: Annotated[bool, typer.Option("--yes", "-y", help="forget without asking")] = False) -> None:
    """Forget every recorded run: plans go back to the profile or the roofline until runs calibrate them again."""
    from costserve.store.calibration import reset_calibration

    with one_line_errors():
        if not yes and not typer.confirm("forget every calibration run?", default=False):
            raise typer.Exit(1)
        console.print(f"forgot {reset_calibration()} calibration run(s)")
