"""`drive`: the one loop every backend runs under — launch, follow with the budget guard, tear down, finish.

Teardown always happens before the results file and the report are written, however the run
ends (done, cancelled, over budget, every worker gone, an error).
"""

from __future__ import annotations

import sqlite3

from costserve.errors import CostserveError, RunStopped
from costserve.notices import warn
from costserve.request import BatchRequest
from costserve.run.backend import Backend
from costserve.run.end import finish_run
from costserve.run.follow import follow_or_stop
from costserve.run.signals import deferred
from costserve.store.runs import RunStore


def drive(
    store: RunStore, results: sqlite3.Connection, backend: Backend, request: BatchRequest, budget: float | None
) -> int:
    """Launch `backend`, follow the run until every job has a result or it stops, tear down, write results and
    report; returns the exit code. `budget` ($) is the run's total, enforced live."""
    total = store.input_info()["jobs"]
    stopped: RunStopped | None = None
    try:
        backend.launch()
        stopped = follow_or_stop(store, results, total, backend, backend.price_per_hour(), budget)
    except RunStopped as exc:  # during the launch (a signal, the broker gone): the same stop path
        stopped = exc
    finally:
        try:
            with deferred(raise_after=False):  # a signal now must not cut the teardown short: it is the stop itself
                left = backend.teardown()
        except CostserveError as exc:  # e.g. the store cannot record the teardown: the fleet is down all the same
            left = str(exc)
        if left is not None:
            warn(left)
    return finish_run(
        store, results, request.results_path, total, stopped, resumable=True, errors_out=request.errors_path
    )
