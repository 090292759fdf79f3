"""The Celery app: Redis broker, late acks, redelivery of tasks whose worker died.

Tasks carry references (run dir, shard id), never prompts or activations. `acks_late` +
`reject_on_worker_lost` give a killed worker's shard back to the queue; prefetch 1 keeps a
worker from hoarding shards it cannot start yet.
"""

from __future__ import annotations

import os

from celery import Celery

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


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
        # Remote workers (SkyPilot) return outputs as task results; a TCP Redis broker doubles as the result store.
        result_backend=url if url.startswith(("redis://", "rediss://")) else None,
        result_expires=7 * 24 * 3600,
        broker_transport_options={"visibility_timeout": int(os.environ.get("COSTSERVE_VISIBILITY_TIMEOUT", "3600"))},
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app()
