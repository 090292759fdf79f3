"""`costserve worker`: a Celery worker serving one queue with one engine replica per worker process."""

from __future__ import annotations

import os
from pathlib import Path


def run_worker(queue: str, broker: str, replica: Path | None, model: str | None, concurrency: int) -> None:
    """Consume `queue` on `broker` until stopped (SIGTERM: finish nothing new, exit)."""
    # workers.celery_app reads the broker and workers.tasks the replica from the environment
    # at import, so set them first.
    os.environ["COSTSERVE_BROKER"] = broker
    if replica is not None:
        os.environ["COSTSERVE_WORKER_REPLICA"] = str(replica.resolve())
    if model:
        os.environ["COSTSERVE_WORKER_MODEL"] = model
    from workers.tasks import app

    app.worker_main(["worker", "--queues", queue, "--concurrency", str(concurrency), "--pool", "prefork",
                     "--loglevel", "INFO", "--hostname", f"{queue}-{os.getpid()}@%h",
                     "--without-gossip", "--without-mingle"])
