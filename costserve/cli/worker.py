"""`costserve worker`: a Celery worker serving one queue, one engine replica per worker process.

One replica: this process hosts the engine and Celery's threads pool holds as many shard leases
as keep the replica at its planned batch (workers/feed.py), each task thread feeding the one
running engine. Several replicas (`--concurrency N`, e.g. one per GPU group of an instance): one
such worker process per replica, each with its own GPUs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

DEFAULT_SHARD_SIZE = 32  # jobs per shard, as `submit --shard-size` defaults


def run_worker(
    queue: str,
    broker: str,
    replica: Path | None,
    model: str | None,
    concurrency: int,
    threads: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> None:
    """Consume `queue` on `broker` until stopped (SIGTERM: take nothing new, finish what is held, exit).

    Each of the `concurrency` replicas runs on `threads` torch threads (default: the CPUs this process is given ÷
    concurrency), so replicas do not oversubscribe the CPUs they share. `shard_size` (jobs) is the run's: the worker
    holds enough shards of that size to keep every slot of its replica busy."""
    from workers.cpu import available_cpus
    from workers.lifeline import watch_driver

    threads = threads or max(1, available_cpus() // concurrency)
    if concurrency > 1:
        _run_replicas(queue, broker, replica, model, concurrency, threads, shard_size)
        return
    # workers.celery_app reads the broker and workers.tasks the replica from the environment
    # at import, so set them first.
    os.environ["COSTSERVE_BROKER"] = broker
    if replica is not None:
        os.environ["COSTSERVE_WORKER_REPLICA"] = str(replica.resolve())
    if model:
        os.environ["COSTSERVE_WORKER_MODEL"] = model
    os.environ["COSTSERVE_WORKER_THREADS"] = str(threads)
    from workers.feed import shards_to_hold
    from workers.replica import read_replica
    from workers.tasks import app

    slots = read_replica(replica).planned_batch if replica is not None else _default_slots()
    watch_driver()
    app.worker_main(
        [
            "worker",
            "--queues",
            queue,
            "--concurrency",
            str(shards_to_hold(slots, shard_size)),
            "--pool",
            "threads",
            "--loglevel",
            "INFO",
            "--hostname",
            f"{queue}-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _default_slots() -> int:
    """Slots of the default replica (one fp32 stage)."""
    from solver.plan import Replica

    return Replica.uniform(1).planned_batch


def _run_replicas(
    queue: str, broker: str, replica: Path | None, model: str | None, replicas: int, threads: int, shard_size: int
) -> None:
    """One worker process per replica, each given its own GPUs (CUDA_VISIBLE_DEVICES by index, unless the
    environment chose them), in this process group; SIGTERM here stops them all."""
    from workers.replica import read_replica

    per_replica = 1
    if replica is not None and (r := read_replica(replica)).vllm is not None:
        per_replica = r.vllm.tensor_parallel_size * r.vllm.pipeline_parallel_size
    cmd = [
        sys.executable,
        "-m",
        "costserve.cli",
        "worker",
        "--queue",
        queue,
        "--concurrency",
        "1",
        "--threads",
        str(threads),
        "--shard-size",
        str(shard_size),
    ]
    if replica is not None:
        cmd += ["--replica", str(replica)]
    if model:
        cmd += ["--model", model]
    children = []
    for i in range(replicas):
        env = {**os.environ, "COSTSERVE_BROKER": broker}
        if "CUDA_VISIBLE_DEVICES" not in os.environ:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i * per_replica + k) for k in range(per_replica))
        children.append(subprocess.Popen(cmd, env=env))

    def stop(signum: int, _: object) -> None:
        for c in children:
            c.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [c.wait() for c in children]
    if any(codes):
        sys.exit(max(codes))
