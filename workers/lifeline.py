"""A worker started by a driver stops itself when that driver is gone.

A killed driver (SIGKILL, out of memory, a closed terminal) must not leave workers running,
billing, and reconnecting to a broker that died with it. The driver puts its pid in
DRIVER_ENV; the worker watches its parent. Once the parent is no longer the driver, the
worker asks itself for Celery's warm shutdown (SIGTERM: take nothing new, finish the shard
at hand, whose results go straight to results.sqlite), and after GRACE_S kills its whole
process group (pool processes and pipeline stages) if it is still there. `costserve resume`
finds the run as it was left.
"""

from __future__ import annotations

import os
import signal
import threading
import time

DRIVER_ENV = "COSTSERVE_DRIVER_PID"
GRACE_ENV = "COSTSERVE_DRIVER_GRACE_S"
GRACE_S = 60.0  # s a worker may spend finishing its shard after its driver died
POLL_S = 1.0


def watch_driver() -> threading.Thread | None:
    """Start the daemon thread that stops this process when its driver (DRIVER_ENV, its parent) is gone; None when
    this process was not started by a driver (a worker started by hand)."""
    driver = os.environ.get(DRIVER_ENV)
    if not driver or os.getppid() != int(driver):
        return None
    grace = float(os.environ.get(GRACE_ENV, GRACE_S))
    thread = threading.Thread(
        target=_stop_when_orphaned, args=(int(driver), grace), name="driver-lifeline", daemon=True
    )
    thread.start()
    return thread


def _stop_when_orphaned(driver: int, grace_s: float) -> None:
    while os.getppid() == driver:
        time.sleep(POLL_S)
    print(
        f"costserve worker: driver {driver} is gone; finishing the shard at hand, stopping within {grace_s:.0f}s",
        flush=True,
    )
    os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown
    time.sleep(grace_s)
    os.killpg(os.getpgid(0), signal.SIGKILL)
