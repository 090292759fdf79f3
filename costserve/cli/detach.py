"""`costserve submit --detach`: the driver goes on in the background; the command returns once the run exists.

A cloud batch outlives the terminal that started it. The driver is a process of its own
(run/spawn.py: the typed request, `--yes --json` semantics), started in its own session so a
closed terminal does not stop it. Its output goes to a log file, which moves into the run directory (`driver.log`) once the run has
an id; this shows the log (plan and warnings) up to that point, then the run id and how to
follow it. A submit that stops before creating a run (a bad file, a refused budget) shows its
one-line error and exit code, as without --detach.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from costserve.cli.output import console, emit_json, err_console
from costserve.request import BatchRequest
from costserve.store.runs import runs_dir

CREATED_PREFIX = '{"event": "created"'  # the driver's first --json line (cli/announce.py)
CREATED_TIMEOUT_S = 3600.0  # planning and pass 1 over a very large job file; the child is left running past it


def detach_submit(
    request: BatchRequest, broker: str | None, output_dir: Path | None, json_out: bool, dry_run: bool = False
) -> int:
    """Start the driver of `request` in the background and return 0 once its run exists (the driver's exit code if it
    ends before that). `broker` reaches it in its environment, never in a file or on its command line."""
    from costserve.run.spawn import SubmitOrder, spawn_driver

    runs_dir().mkdir(parents=True, exist_ok=True)
    log = runs_dir() / f".driver-{os.getpid()}-{time.time_ns()}.log"
    order = SubmitOrder(request=request, dry_run=dry_run, output_dir=output_dir)
    with log.open("w") as out:
        proc = spawn_driver(order, runs_dir(), broker, stdout=out, stderr=subprocess.STDOUT, detach=True)
    created = _wait_created(proc, log)
    if created is None:
        code = proc.poll()
        log.unlink(missing_ok=True)
        return 1 if code is None else code
    final = Path(created["run_dir"]) / "driver.log"
    log.rename(final)  # the driver keeps writing to the same open file
    if json_out:
        emit_json({"event": "detached", "pid": proc.pid, "log": str(final), **created})
    else:
        console.print(
            f"run [bold]{created['run']}[/] continues in the background (driver pid {proc.pid}); log: {final}",
            highlight=False,
        )
        console.print(
            f"follow it with `costserve status {created['run']}`, stop it with `costserve cancel {created['run']}`",
            highlight=False,
            markup=False,
        )
    return 0


def _wait_created(proc: subprocess.Popen, log: Path) -> dict | None:
    """Echo the driver's log to stderr until its `created` line (returned) or its end (None)."""
    shown = 0
    deadline = time.monotonic() + CREATED_TIMEOUT_S
    while time.monotonic() < deadline:
        ended = proc.poll() is not None
        text = log.read_text(errors="replace")
        lines = text[shown:].splitlines(keepends=True)
        for line in lines:
            if not line.endswith("\n") and not ended:
                break  # a line still being written
            shown += len(line)
            if line.startswith(CREATED_PREFIX):
                return json.loads(line)
            err_console.out(line.rstrip("\n"), highlight=False)
        if ended:
            return None
        time.sleep(0.1)
    return None
