"""A submit in a driver process of its own, handed the typed request (never a command line rebuilt from it).

The Python API, the scheduler and `submit --detach` must not block on a run, or must outlive
their caller, so the driver runs in a child process: this writes a `SubmitOrder` (the
BatchRequest and how to run it) to a private file and starts `costserve.cli.driver`, which
reads it and calls `run.submit.submit` with the terminal's `--json` view. A subprocess rather
than `multiprocessing`: a multiprocessing child is joined when its parent exits, and a
detached driver must survive the command that started it. The broker URL travels in the
child's environment ($COSTSERVE_BROKER), never in a file or on a command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict

from costserve.request import BatchRequest

DRIVER_MODULE = "costserve.cli.driver"  # reads one order file and drives it (with --yes and --json semantics)


class SubmitOrder(BaseModel):
    """What a driver process is asked to do: submit `request` (confirmed already), or dry-run it; copy the report
    files to `output_dir` when it ends."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: BatchRequest
    dry_run: bool = False
    output_dir: Path | None = None


def spawn_driver(
    order: SubmitOrder,
    folder: Path,
    broker: str | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    detach: bool = False,
    caller_broker: bool = True,
) -> subprocess.Popen[str]:
    """Start a driver for `order` (its order file written in `folder`, mode 0600, and removed by the driver once
    read). Its stdout carries the `created` and `ended` JSON lines, its stderr the human output. `detach`: its own
    session, so a closed terminal does not stop it. `caller_broker`: the child keeps this process's $COSTSERVE_BROKER
    when `broker` is None (False for the scheduler, whose own broker is not the run's)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".submit-{os.getpid()}-{time.time_ns()}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(order.model_dump_json())
    env = {k: v for k, v in os.environ.items() if caller_broker or k != "COSTSERVE_BROKER"}
    if broker:
        env["COSTSERVE_BROKER"] = broker
    return subprocess.Popen(
        [sys.executable, "-m", DRIVER_MODULE, str(path)],
        stdout=stdout,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        start_new_session=detach,
    )


def read_order(path: Path) -> SubmitOrder:
    """The order a driver was started with; its file is removed once read. An order that cannot be read (missing, not
    an order) is a BadRequestError naming the file: only a spawned driver reads one, so it is said in one line."""
    from pydantic import ValidationError

    from costserve.errors import BadRequestError

    try:
        return SubmitOrder.model_validate_json(path.read_text())
    except (OSError, ValidationError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else exc.errors()[0]["msg"]
        raise BadRequestError(f"{path}: not a submit order ({why})") from None
    finally:
        path.unlink(missing_ok=True)
