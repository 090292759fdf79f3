"""The Celery app: Redis broker, late acks, redelivery of tasks whose worker died.

A task carries one shard's jobs (never activations) and its result is the shard's report
(workers/shard_report.py): Redis is both broker and result store, and the driver sends a window
of shards at a time and deletes each report once written, so it never holds the whole batch.
`acks_late` + `reject_on_worker_lost` give a killed worker's shard back to the queue. A worker
holds several shards at once (threads pool, one task per held shard, prefetch 1 so it reserves
no more than it holds), all unacknowledged until their reports are the task results.

Redis redelivers an unacknowledged message after the visibility timeout, whether or not its
worker is still on it; a held shard must never be redelivered while it is being worked on, so
the driver sets the timeout (`$COSTSERVE_VISIBILITY_TIMEOUT`, s) above the longest a healthy
worker can hold one: the whole predicted run plus the watchdog's allowance
(costserve/run/watchdog.visibility_timeout_s). A worker that dies is not left to that
timeout: the driver re-queues its shards at its next poll.
"""

from __future__ import annotations

import os

from celery import Celery

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
VISIBILITY_ENV = "COSTSERVE_VISIBILITY_TIMEOUT"
VISIBILITY_TIMEOUT_S = 3600  # s, when no driver set one (a worker started by hand)


def make_app(broker: str | None = None) -> Celery:
    """A Celery app on `broker` (default `$COSTSERVE_BROKER`, else a local Redis)."""
    url = broker or os.environ.get("COSTSERVE_BROKER") or DEFAULT_BROKER
    app = Celery("costserve", broker=url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        # shard reports come back as task states and results: the Redis broker doubles as the result store
        result_backend=url if url.startswith(("redis://", "rediss://", "redis+socket://")) else None,
        result_expires=7 * 24 * 3600,
        broker_transport_options={"visibility_timeout": int(os.environ.get(VISIBILITY_ENV, VISIBILITY_TIMEOUT_S))},
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app()
