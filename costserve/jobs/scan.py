"""Pass 1 over a job file: stream its valid jobs into workload classes (all the planner needs), never holding them.

It counts and hashes the file as it goes; pass 2 (`run/prepare.write_shards`) reads it again
into shards and checks the count and hash against this scan. `model_rules` says what the
run's model accepts of a job, for both passes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from costserve.errors import JobFileRejected
from costserve.jobs.earlier import done_custom_ids
from costserve.jobs.reader import LineError, valid_jobs
from costserve.jobs.rules import ModelRules
from costserve.jobs.unhonoured import FieldAudit
from costserve.notices import say, warn
from costserve.request import BatchRequest
from solver.plan import Job
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
        not_done(
            valid_jobs(request.job_file, default_max_tokens, bad_line, digest=digest, rules=rules, audit=audit),
            done,
            count,
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


def not_done(jobs: Iterable[Job], done: set[str], on_done: Callable[[Job], object]) -> Iterator[Job]:
    """The jobs whose custom_id is not in `done` (an earlier submit's results); each other one goes to `on_done`."""
    for job in jobs:
        if job.custom_id in done:
            on_done(job)
        else:
            yield job
