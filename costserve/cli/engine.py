"""`costserve run-local`: run a job file through one engine replica on this machine."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from costserve.cli.output import BadLinePrinter, console, err_console, fail
from costserve.config import ConfigError, load_settings
from costserve.durations import format_duration
from costserve.request import errors_path_for


def run_local(jobs_path: Path, replica_path: Path | None, model: str | None, out: Path | None) -> int:
    """Generate every valid job of `jobs_path`; write OpenAI Batch output lines in input order. Exit code."""
    from workers.engine import Engine
    from workers.model_source import ModelSourceError, catalog_model_name
    from workers.replica import ReplicaError, read_replica
    from workers.results import backend_fingerprint, batch_output_line

    try:
        settings = load_settings()
        replica = read_replica(replica_path) if replica_path else None
    except (ConfigError, ReplicaError) as exc:
        fail(str(exc))
    from costserve.jobs.reader import JobFileError, valid_jobs

    bad = BadLinePrinter(err_console, settings.max_errors)
    try:  # run-local keeps the jobs to index its results (a development command; submit streams)
        jobs = list(valid_jobs(jobs_path, settings.default_max_tokens, bad))
    except JobFileError as exc:
        fail(str(exc))
    out = out or jobs_path.with_suffix(".results.jsonl")
    if not jobs:
        fail(f"{jobs_path}: no valid jobs to run")
    try:
        engine = Engine(replica, model=model or settings.default_model)
    except (ModelSourceError, ReplicaError) as exc:
        fail(str(exc))
    model_name = catalog_model_name(model or settings.default_model)
    fingerprint = backend_fingerprint(model_name, engine.replica.model_dump_json())
    results: dict[int, dict] = {}
    tokens, t0 = 0, time.perf_counter()
    progress = Progress(
        TextColumn("generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    with engine, progress:
        task = progress.add_task("jobs", total=len(jobs), rate="")
        for gen in engine.stream(jobs):
            results[gen.index] = batch_output_line(gen, model_name, fingerprint=fingerprint)
            tokens += gen.completion_tokens
            progress.update(task, advance=1, rate=f"{tokens / (time.perf_counter() - t0):.1f} tokens/s")
    errors_out = errors_path_for(out)
    with out.open("w") as f, errors_out.open("w") as errors:  # as OpenAI's Batch API: failed requests apart
        for i in range(len(jobs)):
            (f if results[i]["error"] is None else errors).write(json.dumps(results[i]) + "\n")
    secs = time.perf_counter() - t0
    failed = sum(1 for r in results.values() if r["error"] is not None)
    console.print(
        f"{len(jobs)} jobs, {tokens} output tokens in {format_duration(secs)} ({tokens / secs:.1f} tokens/s), "
        f"{failed} failed -> {out}"
        + (f" (errors in {errors_out})" if failed else "")
        + (f"; {bad.count} bad lines skipped" if bad.count else "")
    )
    return 1 if bad.count or failed else 0
