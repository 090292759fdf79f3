"""`costserve worker`: a Celery worker serving one queue with one engine replica per worker process."""

from __future__ import annotations

import os
from pathlib import Path


def run_worker(queue: str, broker: str, replica: Path | None, model: str | None, concurrency: int,
               threads: int | None = None) -> None:
    """Consume `queue` on `broker` until stopped (SIGTERM: finish nothing new, exit).

    Each of the `concurrency` processes runs its replica on `threads` torch threads (default: the CPUs
    this process is given ÷ concurrency), so replicas do not oversubscribe the CPUs they share.
    """
    from workers.cpu import available_cpus
    from workers.lifeline import watch_driver

    # workers.celery_app reads the broker and workers.tasks the replica from the environment
    # at import, so set them first.
    os.environ["COSTSERVE_BROKER"] = broker
    if replica is not None:
        os.environ["COSTSERVE_WORKER_REPLICA"] = str(replica.resolve())
    if model:
        os.environ["COSTSERVE_WORKER_MODEL"] = model
    os.environ["COSTSERVE_WORKER_THREADS"] = str(threads or max(1, available_cpus() // concurrency))
    from workers.tasks import app

    watch_driver()
    app.worker_main(["worker", "--queues", queue, "--concurrency", str(concurrency), "--pool", "prefork",
                     "--loglevel", "INFO", "--hostname", f"{queue}-{os.getpid()}@%h",
                     "--without-gossip", "--without-mingle"])
