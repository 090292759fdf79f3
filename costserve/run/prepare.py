"""The front half of every run, whatever its backend: read the job file twice, never whole.

Pass 1 (`scan_jobs`) streams the valid jobs into workload classes (all the planner needs),
counting and hashing the file as it goes. Pass 2 (`write_shards`), after the plan is
confirmed and the run created, streams them again into shard files, one queue per job
(`queue_of`), and checks the count and hash against pass 1: a file that changed in between
stops the run before anything is queued.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from costserve.errors import JobFileRejected
from costserve.jobs.reader import LineError, valid_jobs
from costserve.jobs.rules import ModelRules
from costserve.request import BatchRequest
from costserve.store.runs import RunStore
from costserve.notices import say, warn
from solver.plan import Job, Plan
from solver.workload import Workload, workload_from_jobs


@dataclass
class JobScan:
    """Pass 1 over a job file: its workload classes, valid jobs, SHA-256 and rejected lines."""

    workload: Workload
    jobs: int
    sha256: str
    bad: int = 0
    rejected: list[LineError] = field(default_factory=list)
    rules: ModelRules | None = None  # what the run's model accepts; pass 2 applies the same


def model_rules(request: BatchRequest) -> ModelRules:
    """What the request's model accepts of a job: on this machine from the model itself (its tokenizer and context),
    for the cloud from the catalog."""
    from costserve.jobs.rules import catalog_model_rules, local_model_rules

    if request.backend == "local":
        return local_model_rules(request.model, request.model_override)
    return catalog_model_rules(str(request.model), request.model_override)


def scan_jobs(request: BatchRequest, default_max_tokens: int, on_bad_line: Callable[[LineError], None],
              rules: ModelRules | None = None) -> JobScan:
    """Pass 1: classes, count and hash of the request's job file; JobFileRejected when a bad line is not allowed.

    With `rules`, jobs the model cannot serve are bad lines, and jobs served despite naming another model
    (--model-override) are counted in one warning."""
    digest = hashlib.sha256()
    rejected: list[LineError] = []

    def bad_line(error: LineError) -> None:
        rejected.append(error)
        on_bad_line(error)

    workload = workload_from_jobs(valid_jobs(request.jobs, default_max_tokens, bad_line, digest=digest, rules=rules))
    if rules is not None and rules.overridden:
        named = ", ".join(f"{name!r} ({n})" for name, n in rules.overridden.most_common(3))
        warn(f"{sum(rules.overridden.values())} job(s) name another model ({named}); {rules.name} serves them "
             "(--model-override)")
    if rejected and not request.skip_invalid:
        raise JobFileRejected(f"{request.jobs}: {len(rejected)} bad line(s); fix them, or pass --skip-invalid to run "
                              "the valid lines (nothing was run)")
    if not workload.requests:
        raise JobFileRejected(f"{request.jobs}: no jobs")
    return JobScan(workload, workload.requests, digest.hexdigest(), len(rejected), rejected, rules)


def create_run(request: BatchRequest, scan: JobScan, plan: Plan) -> RunStore:
    """A new run directory holding the request, the plan and any rejected lines; this process is its driver."""
    store = RunStore.create(request.jobs, scan.jobs, scan.sha256)
    store.claim_driver()
    request.save(store.dir)
    store.write_json("plan.json", plan.model_dump_json(indent=2))
    if scan.rules is not None and scan.rules.overridden:
        store.event("model override", json.dumps(dict(scan.rules.overridden)))
    if scan.rejected:
        path = write_rejected(scan.rejected, store.dir)
        store.event("rejected", f"{scan.bad} bad line(s)")
        say(f"{scan.bad} bad line(s) skipped; they are in {path} (errors in rejected.errors.txt)")
    return store


def write_rejected(errors: list[LineError], folder: Path) -> Path:
    """`rejected.jsonl` (each rejected line, byte for byte, to fix and resubmit) and `rejected.errors.txt`
    (FILE:LINE: field: problem for each) in `folder`; returns the first."""
    lines = folder / "rejected.jsonl"
    with lines.open("wb") as raw, (folder / "rejected.errors.txt").open("w") as why:
        for error in errors:
            raw.write(error.raw if error.raw.endswith(b"\n") else error.raw + b"\n")
            why.write(f"{error}\n")
    return lines


def shard_jobs(store: RunStore, jobs: Iterable[Job], queue_of: Callable[[Job], str], shard_size: int) -> int:
    """Write `jobs` as shard files of `shard_size` jobs per queue (`<queue>-shard-NNNNN`, or `shard-NNNNN` for the
    local queue), in input order within each queue, and record them as queued; returns the jobs written."""
    buffers: dict[str, list[Job]] = {}
    counts: dict[str, int] = {}
    written = 0

    def flush(queue: str) -> None:
        from workers.shard_io import write_shard

        chunk = buffers.pop(queue, [])
        if chunk:
            n = counts.get(queue, 0)
            counts[queue] = n + 1
            sid = f"shard-{n:05d}" if queue == "local" else f"{queue}-shard-{n:05d}"
            write_shard(store.dir, sid, chunk)
            store.add_shard(sid, queue, len(chunk))

    for job in jobs:
        queue = queue_of(job)
        buffers.setdefault(queue, []).append(job)
        written += 1
        if len(buffers[queue]) >= shard_size:
            flush(queue)
    for queue in sorted(buffers):
        flush(queue)
    return written


def write_shards(store: RunStore, request: BatchRequest, scan: JobScan, default_max_tokens: int,
                 queue_of: Callable[[Job], str]) -> None:
    """Pass 2: the request's valid jobs into shards; JobFileRejected when the file changed since pass 1."""
    digest = hashlib.sha256()
    written = shard_jobs(store, valid_jobs(request.jobs, default_max_tokens, lambda _: None, digest=digest,
                                           rules=scan.rules), queue_of, request.shard_size)
    if written != scan.jobs or digest.hexdigest() != scan.sha256:
        raise JobFileRejected(f"{request.jobs} changed while it was being read; submit it again "
                              f"(run {store.id} was not started)")
