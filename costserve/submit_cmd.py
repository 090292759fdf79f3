"""`costserve submit` on the embedded backend: job file -> run store -> shards on a Redis queue -> local workers -> results.

Steps: validate (streamed) → choose the local replica from the quality profile → write
shards of `shard_size` jobs → start the broker (embedded Redis unless `--broker`) and the
workers → queue one Celery task per shard → live progress from the results database →
results in input order (OpenAI Batch output) → stop workers and broker.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from costserve.config import ConfigError, load_settings
from costserve.runstore import RunStore
from costserve.ui import console, err_console, fail, read_valid_jobs

QUEUE = "local"


def _redact(url: str) -> str:
    """A broker URL without its password, for output."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':' if user else ':'}***@{host}"


def run_submit(jobs_path: Path, model: str | None, quality: float, broker: str | None, out: Path | None,
               shard_size: int, workers: int, stages: int, replica_path: Path | None = None) -> int:
    """Run every valid job of `jobs_path` on this machine; returns the exit code."""
    from deploy.local import EmbeddedRedis, start_worker, stop_worker
    from solver.device_profile import default_profile_path
    from solver.local_replica import local_replica, profile_layer_ms
    from solver.plan import Replica
    from workers.celery_app import make_app
    from workers.model_source import ModelSourceError, model_name, resolve_model_dir
    from workers.shard_io import results_db, write_shard

    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc))
    jobs, bad = read_valid_jobs(jobs_path, settings.default_max_tokens, settings.max_errors)
    if bad.count:
        fail(f"{jobs_path}: {bad.count} bad line(s); fix them and submit again (nothing was run)")
    if not jobs:
        fail(f"{jobs_path}: no jobs")
    try:
        model_dir = resolve_model_dir(model or None)  # converts the embedded model once, before workers race to
    except ModelSourceError as exc:
        fail(str(exc))
    layers = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
    name = model_name(model)
    if replica_path is not None:
        from workers.replica import ReplicaError, read_replica

        try:
            spec = read_replica(replica_path)  # a replica, or a plan's first group's
            spec.check_layers(layers)
        except ReplicaError as exc:
            fail(str(exc))
        replica = Replica.model_validate(spec.model_dump())
    else:
        layer_ms = profile_layer_ms(default_profile_path("cpu", name))
        replica = local_replica(name, layers, quality, stages=stages, layer_ms=layer_ms)
    store = RunStore.create(jobs_path, len(jobs))
    replica_file = store.write_json(f"replica-{QUEUE}.json", replica.model_dump_json(indent=2))
    console.print(f"run [bold]{store.id}[/]: {len(jobs)} jobs of {name} on this machine, replica {replica.summary()}")
    shards = []
    for i in range(0, len(jobs), shard_size):
        sid = f"shard-{i // shard_size:05d}"
        write_shard(store.dir, sid, jobs[i : i + shard_size])
        store.add_shard(sid, QUEUE, len(jobs[i : i + shard_size]))
        shards.append(sid)
    redis = EmbeddedRedis(store.dir) if broker is None and settings.broker is None else None
    url = redis.url if redis is not None else (broker or settings.broker or "")
    store.event("broker", _redact(url))
    log = store.dir / "workers.log"
    procs = [start_worker(store.dir, QUEUE, url, replica_file, str(model_dir), log) for _ in range(workers)]
    results = results_db(store.dir)
    try:
        app = make_app(url)
        for sid in shards:
            app.send_task("workers.tasks.run_shard", args=(str(store.dir), sid), queue=QUEUE)
        store.event("queued", f"{len(shards)} shards")
        _follow(store, results, len(jobs), procs, log)
    finally:
        for p in procs:
            stop_worker(p)
        if redis is not None:
            redis.stop()
    out = out or jobs_path.with_suffix(".results.jsonl")
    failed = 0
    with out.open("w") as f:
        for (output,) in results.execute("SELECT output FROM results ORDER BY line"):
            failed += json.loads(output)["error"] is not None
            f.write(output + "\n")
    store.event("finished", str(out))
    console.print(f"run {store.id}: {len(jobs)} results -> {out}" + (f" ({failed} failed)" if failed else ""), markup=False)
    return 1 if failed else 0


def _follow(store: RunStore, results, total: int, procs, log: Path) -> None:  # type: ignore[no-untyped-def]
    """Live view until every job has a result; fails with the log's path if every worker died."""
    progress = Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                        TimeRemainingColumn(), console=err_console, transient=True)
    t0 = time.monotonic()
    with progress:
        task = progress.add_task("jobs", total=total, rate="")
        while True:
            done, tokens = results.execute(
                "SELECT COUNT(*), COALESCE(SUM(json_extract(output, '$.response.body.usage.completion_tokens')), 0) FROM results"
            ).fetchone()
            store.mark_finished_shards(results)
            progress.update(task, completed=done, rate=f"{tokens / max(time.monotonic() - t0, 1e-9):.1f} tokens/s")
            if done >= total:
                return
            if all(p.poll() is not None for p in procs):
                fail(f"every worker exited before the run finished; see {log} (run {store.id})")
            time.sleep(0.5)
