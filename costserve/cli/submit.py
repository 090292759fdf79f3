"""`costserve submit` on the embedded backend: job file -> plan -> run store -> shards -> local workers -> results.

Steps: validate and bucket the jobs (streamed) → choose the local replica from the quality
profile → plan the run (this machine priced as a cloud CPU, the cloud fleet and baselines
beside it) → confirm → write shards of `shard_size` jobs (streamed again) → hand over to
`local_run.execute_local` (broker, workers, live view, recovery, results, report).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from costserve.config import ConfigError, load_settings
from costserve.durations import parse_duration
from costserve.cli.plan import show_plan
from costserve.store.runs import RunStore
from costserve.jobs.reader import JobFileError, valid_jobs
from costserve.store.runs import file_sha256
from costserve.cli.output import BadLinePrinter, console, err_console, fail, write_rejected

T = TypeVar("T")

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from solver.plan import Plan, Replica
    from solver.workload import Workload


def redact_url(url: str) -> str:
    """A broker URL without its password, for output."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':' if user else ':'}***@{host}"


def run_submit(jobs_path: Path, model: str | None, quality: float, broker: str | None, out: Path | None,
               shard_size: int, workers: int, stages: int, replica_path: Path | None = None, deadline: str = "8h",
               yes: bool = False, budget: float | None = None, skip_invalid: bool = False) -> int:
    """Run every valid job of `jobs_path` on this machine; returns the exit code."""
    from costserve.run.local import QUEUE, execute_local, require_broker, write_settings
    from solver.device_profile import default_profile_path
    from solver.local_replica import local_replica, profile_layer_ms
    from solver.plan import Replica
    from workers.model_source import ModelSourceError, model_name, resolve_model_dir
    from solver.workload import workload_from_jobs
    from workers.shard_io import write_shard

    try:
        settings = load_settings()
        deadline_s = parse_duration(deadline)
    except ConfigError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(f"--deadline: {exc}")
    if budget is not None and budget <= 0:
        fail("--budget must be more than $0")
    # Pass 1 streams the file into workload classes (the plan needs only those); pass 2 streams it into shards.
    # The driver never holds the whole job file.
    bad = BadLinePrinter(err_console, settings.max_errors, keep=skip_invalid)
    try:
        workload = workload_from_jobs(valid_jobs(jobs_path, settings.default_max_tokens, bad))
    except JobFileError as exc:
        fail(str(exc))
    if bad.count and not skip_invalid:
        fail(f"{jobs_path}: {bad.count} bad line(s); fix them, or pass --skip-invalid to run the valid lines (nothing was run)")
    total = workload.requests
    if not total:
        fail(f"{jobs_path}: no jobs")
    try:
        model_dir = resolve_model_dir(model or None)  # converts the embedded model once, before workers race to
    except ModelSourceError as exc:
        fail(str(exc))
    config = json.loads((model_dir / "config.json").read_text())
    layers = config["num_hidden_layers"]
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
    plan = _local_plan(workload, name, config, replica, deadline_s, quality, settings.local_cpu_price_per_hour)
    show_plan(plan, f"{total:,} jobs of {name} on this machine (priced as {plan.groups[0].region})")
    if budget is not None and plan.cost > budget:
        fail(f"--budget ${budget:g}: the predicted cost on this machine is ${plan.cost:.4f}; raise --budget")
    confirm(yes, f"run {total:,} jobs on this machine")
    require_broker(broker or settings.broker)
    store = RunStore.create(jobs_path, total)
    store.event("driver", str(os.getpid()))
    store.write_json("plan.json", plan.model_dump_json(indent=2))
    if bad.rejected:
        rejected = write_rejected(bad.rejected, store.dir)
        store.event("rejected", f"{bad.count} bad line(s)")
        console.print(f"{bad.count} bad line(s) skipped; they are in {rejected} (errors in rejected.errors.txt)", markup=False)
    store.write_json(f"replica-{QUEUE}.json", replica.model_dump_json(indent=2))
    write_settings(store, model_dir, workers, out or jobs_path.with_suffix(".results.jsonl"), budget)
    console.print(f"run [bold]{store.id}[/]: {total} jobs of {name} on this machine, replica {replica.summary()}")
    written = 0
    for n, chunk in enumerate(_chunks(valid_jobs(jobs_path, settings.default_max_tokens, lambda _: None), shard_size)):
        sid = f"shard-{n:05d}"
        write_shard(store.dir, sid, chunk)
        store.add_shard(sid, QUEUE, len(chunk))
        written += len(chunk)
    if written != total or file_sha256(jobs_path) != store.input_info()["sha256"]:
        fail(f"{jobs_path} changed while it was being read; submit it again (run {store.id} was not started)")
    return execute_local(store, broker or settings.broker)


def _local_plan(workload: "Workload", name: str, config: dict, replica: "Replica", deadline_s: float, quality: float,  # type: ignore[type-arg]
                price: float | None) -> "Plan":
    """The local run's plan: this machine priced like a cloud CPU, and the cloud fleet and baselines for the same batch.

    A model the catalog lacks is described from its config.json.
    """
    from catalog.load import load_models
    from costserve.planning.offerings import current_offerings
    from solver.device_profile import default_profile_path, load_device_profile
    from solver.local_plan import local_plan, model_row_from_hf_config

    models = load_models()
    match = models[models["model"].str.lower() == name.lower()]
    row = match.iloc[0] if not match.empty and int(match.iloc[0]["layers"]) == config["num_hidden_layers"] \
        else model_row_from_hf_config(name, config)
    offerings, gpus, _ = current_offerings()
    profile_path = default_profile_path("cpu", row["model"])
    profile = load_device_profile(profile_path) if profile_path.is_file() else None
    with console.status("planning (this machine, and the cloud fleet and baselines for comparison)..."):
        return local_plan(workload, row, replica, offerings, gpus, deadline_s, quality, price, profile)


def _chunks(items: "Iterable[T]", size: int) -> "Iterator[list[T]]":
    """Consecutive lists of `size` items (the last may be shorter), streamed (itertools.batched is Python 3.12+)."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def confirm(yes: bool, what: str) -> None:
    """Ask before starting unless --yes; without a terminal to ask on, --yes is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"about to {what}: pass --yes to go ahead without a prompt")
    if not typer.confirm(f"{what}?", default=True):
        fail("nothing was run", code=1)
