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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from costserve.errors import JobFileRejected
from costserve.jobs.earlier import done_custom_ids, earlier_lines
from costserve.jobs.reader import LineError, valid_jobs
from costserve.jobs.rules import ModelRules
from costserve.jobs.unhonoured import FieldAudit
from costserve.notices import say, warn
from costserve.request import BatchRequest
from costserve.store.runs import DRY_RUN_EVENT, RunStore
from solver.plan import Job, Plan
from solver.workload import Grid, Workload, workload_from_jobs


@dataclass
class JobScan:
    """Pass 1 over a job file: its workload classes, valid jobs, SHA-256 and rejected lines."""

    workload: Workload
    jobs: int
    sha256: str
    bad: int = 0
    rejected: list[LineError] = field(default_factory=list)
    rules: ModelRules | None = None  # what the run's model accepts; pass 2 applies the same
    done: set[str] = field(default_factory=set)  # custom_ids with a result in --resume-from: not run again
    carried: int = 0  # valid jobs among them


def model_rules(request: BatchRequest) -> ModelRules:
    """What the request's model accepts of a job: on this machine from the model itself (its tokenizer and context),
    for the cloud from the catalog."""
    from costserve.jobs.rules import catalog_model_rules, local_model_rules

    if request.backend == "local":
        return local_model_rules(request.model, request.model_override)
    return catalog_model_rules(str(request.model), request.model_override)


def scan_jobs(
    request: BatchRequest,
    default_max_tokens: int,
    on_bad_line: Callable[[LineError], None],
    rules: ModelRules | None = None,
    grid: Grid | None = None,
) -> JobScan:
    """Pass 1: classes, count and hash of the request's job file; JobFileRejected when a bad line is not allowed.

    With `rules`, jobs the model cannot serve are bad lines, and jobs served despite naming another model
    (--model-override) are counted in one warning."""
    digest = hashlib.sha256()
    rejected: list[LineError] = []

    def bad_line(error: LineError) -> None:
        rejected.append(error)
        on_bad_line(error)

    done = done_custom_ids(request.resume_from) if request.resume_from else set()
    carried = 0

    def count(_: Job) -> None:  # pass 1 keeps a count only: jobs are never held in memory
        nonlocal carried
        carried += 1

    audit = FieldAudit(request.strict)
    workload = workload_from_jobs(
        _not_done(
            valid_jobs(request.jobs, default_max_tokens, bad_line, digest=digest, rules=rules, audit=audit), done, count
        ),
        grid=grid,
    )
    for line in audit.warnings(request.jobs):
        warn(line)
    if rules is not None and rules.overridden:
        named = ", ".join(f"{name!r} ({n})" for name, n in rules.overridden.most_common(3))
        warn(
            f"{sum(rules.overridden.values())} job(s) name another model ({named}); {rules.name} serves them "
            "(--model-override)"
        )
    if rejected and not request.skip_invalid:
        raise JobFileRejected(
            f"{request.jobs}: {len(rejected)} bad line(s); fix them, or pass --skip-invalid to run "
            "the valid lines (nothing was run)"
        )
    if not workload.requests and carried:
        raise JobFileRejected(
            f"{request.jobs}: all {carried} jobs already have a result in {request.resume_from}; nothing to run"
        )
    if not workload.requests:
        raise JobFileRejected(f"{request.jobs}: no jobs")
    if carried:
        say(f"{carried:,} job(s) already have a result in {request.resume_from}: carried over, not run again")
    return JobScan(workload, workload.requests, digest.hexdigest(), len(rejected), rejected, rules, done, carried)


def _not_done(jobs: Iterable[Job], done: set[str], on_done: Callable[[Job], object]) -> Iterator[Job]:
    """The jobs whose custom_id is not in `done` (an earlier submit's results); each other one goes to `on_done`."""
    for job in jobs:
        if job.custom_id in done:
            on_done(job)
        else:
            yield job


def create_run(request: BatchRequest, scan: JobScan, plan: Plan, dry_run: bool = False) -> RunStore:
    """A new run directory holding the request, the plan and any rejected lines; this process is its driver.

    A `dry_run` is marked as such: `costserve runs` and the trend report leave it out."""
    store = RunStore.create(request.jobs, scan.jobs + scan.carried, scan.sha256)
    store.claim_driver()
    if dry_run:
        store.event(DRY_RUN_EVENT, "submit --dry-run: nothing was launched")
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
        from costserve.store.shard_files import write_shard

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


def write_shards(
    store: RunStore, request: BatchRequest, scan: JobScan, default_max_tokens: int, queue_of: Callable[[Job], str]
) -> None:
    """Pass 2: the request's valid jobs into shards; JobFileRejected when the file changed since pass 1."""
    digest = hashlib.sha256()
    carried: dict[str, int] = {}  # custom_id -> input line of each job done by an earlier submit
    jobs = valid_jobs(
        request.jobs,
        default_max_tokens,
        lambda _: None,
        digest=digest,
        rules=scan.rules,
        audit=FieldAudit(request.strict),
    )  # the same lines as pass 1 pass
    written = shard_jobs(
        store,
        _not_done(jobs, scan.done, lambda job: carried.setdefault(job.custom_id, job.line)),
        queue_of,
        request.shard_size,
    )
    if carried and request.resume_from is not None:
        _carry_over(store, request.resume_from, carried)
    if written != scan.jobs or digest.hexdigest() != scan.sha256:
        raise JobFileRejected(
            f"{request.jobs} changed while it was being read; submit it again (run {store.id} was not started)"
        )


def _carry_over(store: RunStore, earlier: Path, carried: dict[str, int]) -> None:
    """Copy the earlier results of `carried` custom_ids into the run's results store, at their input lines."""
    from costserve.store.results import carry_results, results_db

    con = results_db(store.dir)
    try:
        n = carry_results(con, ((cid, carried[cid], raw) for cid, raw in earlier_lines(earlier, set(carried))))
    finally:
        con.close()
    if n != len(carried):
        raise JobFileRejected(
            f"{earlier} changed while it was being read; submit again (run {store.id} was not started)"
        )
    store.event("carried", f"{n} result(s) from {earlier}")
