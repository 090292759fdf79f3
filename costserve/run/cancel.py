"""`costserve cancel RUN`: stop a run and its fleet, keeping every finished result."""

from __future__ import annotations

import time

from costserve.durations import format_duration
from costserve.errors import RunStateError, StopReason
from costserve.notices import say
from costserve.run.leftovers import driver_alive, stop_leftovers
from costserve.store.run_state import Event
from costserve.store.runs import RunStore


def cancel_run(run: RunStore, wait_s: float = 60.0) -> int:
    """Stop a run, keeping every finished result: its driver stops the fleet, or, with no driver alive, this does."""
    if (ended := run.ended()) is not None:
        say(f"run {run.id} already {ended}; nothing to cancel")
        return 0
    run.event(Event.CANCEL_REQUESTED)
    driver = driver_alive(run)
    if driver is not None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if run.ended() is not None:
                break
            time.sleep(0.5)
        else:
            raise RunStateError(
                f"run {run.id}: its driver (pid {driver}) did not stop within {format_duration(wait_s)}; cancel again or kill it"
            )
    else:  # the driver is gone (killed, machine rebooted): stop what it left running
        stop_leftovers(run)
        for queue in {row.group for row in run.fleet()}:
            run.fleet_down(queue)
        run.record_stop(StopReason.CANCELLED, "cancelled")
    say(
        f"run {run.id} cancelled: {run.results_done()}/{run.input_info()['jobs']} jobs have results "
        f"(`costserve results {run.id}`)"
    )
    return 0
