"""The front half of every run, whatever its backend: create the run, then pass 2 over the job file into shards.

Pass 1 (`jobs/scan.scan_jobs`) streamed the valid jobs into workload classes for the planner.
Pass 2 (`write_shards`), after the plan is confirmed and the run created, streams them again
into shard files, one queue per job (`queue_of`), and checks the count and hash against pass
1: a file that changed in between stops the run before anything is queued.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from costserve.errors import JobFileRejected, RunStateError
from costserve.jobs.earlier import earlier_lines
from costserve.jobs.reader import LineError, valid_jobs
from costserve.jobs.scan import JobScan, not_done
from costserve.jobs.unhonoured import FieldAudit
from costserve.notices import say
from costserve.request import REQUEST_FILE, BatchRequest
from costserve.run.kill_points import SHARD_WRITTEN, kill_point
from costserve.store.run_state import Event
from costserve.store.runs import RunStore
from solver.plan import Job, Plan

LOCAL_QUEUE = "local"  # the local backend's one fleet group: its name in the run store and in shard ids


def create_run(
    request: BatchRequest, scan: JobScan, plan: Plan, dry_run: bool = False, files: dict[str, str] | None = None
) -> RunStore:
    """A new run directory holding the request, the plan, `files` (name → text) and any rejected lines; this process
    is its driver. The run exists once all of it is written (RunStore.create).

    A `dry_run` is marked as such: `costserve runs` and the trend report leave it out."""
    files = {
        REQUEST_FILE: request.model_dump_json(indent=2),
        "plan.json": plan.model_dump_json(indent=2),
        **(files or {}),
    }
    store = RunStore.create(request.job_file, scan.jobs + scan.carried, scan.sha256, files)
    store.claim_driver()
    if dry_run:
        store.event(Event.DRY_RUN, "submit --dry-run: nothing was launched")
    if scan.rules is not None and scan.rules.overridden:
        store.event(Event.MODEL_OVERRIDE, json.dumps(dict(scan.rules.overridden)))
    if scan.rejected:
        path = write_rejected(scan.rejected, store.dir)
        store.event(Event.REJECTED, f"{scan.bad} bad line(s)")
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


def queue_chooser(request: BatchRequest, plan: Plan, scan: JobScan) -> Callable[[Job], str]:
    """The queue each job of a run goes to: the one local queue, or the fleet group the plan's class shares give it."""
    if request.backend != "sky":
        return lambda _: LOCAL_QUEUE
    from costserve.jobs.assignment import GroupAssigner

    assigner = GroupAssigner(plan.groups, {k.name: k.count for k in scan.workload.classes})
    return lambda job: f"g{assigner.group_of(job)}"


def prepare_shards(store: RunStore, request: BatchRequest, scan: JobScan, plan: Plan, default_max_tokens: int) -> None:
    """Pass 2 into the run's shards, then the `prepared` event: from there on the shards are the run's whole work."""
    write_shards(store, request, scan, default_max_tokens, queue_chooser(request, plan, scan))
    store.event(Event.PREPARED, f"{len(store.shards())} shard(s)")


def finish_preparation(store: RunStore, request: BatchRequest, default_max_tokens: int) -> None:
    """Complete the preparation of a run whose driver was killed before every shard was written (no `prepared` event):
    pass 1 and pass 2 again over the job file, which must not have changed (RunStateError). A shard written before
    the kill is written again whole, with the same jobs."""
    from costserve.jobs.scan import model_rules, scan_jobs

    plan = store.plan()
    if store.events(Event.PREPARED) or store.events(Event.QUEUED) or plan is None:  # QUEUED: an older run
        return
    say(f"run {store.id}: its preparation was cut short; writing its shards again from {request.job_file}")
    scan = scan_jobs(request, default_max_tokens, lambda _: None, model_rules(request))
    if scan.sha256 != store.input_info()["sha256"]:
        raise RunStateError(
            f"run {store.id}: {request.job_file} changed since the run was created, before its shards were written; "
            "submit it again"
        )
    prepare_shards(store, request, scan, plan, default_max_tokens)


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
            sid = f"shard-{n:05d}" if queue == LOCAL_QUEUE else f"{queue}-shard-{n:05d}"
            write_shard(store.dir, sid, chunk)
            store.add_shard(sid, queue, len(chunk))
            kill_point(SHARD_WRITTEN)

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
        request.job_file,
        default_max_tokens,
        lambda _: None,
        digest=digest,
        rules=scan.rules,
        audit=FieldAudit(request.strict),
    )  # the same lines as pass 1 pass
    written = shard_jobs(
        store,
        not_done(jobs, scan.done, lambda job: carried.setdefault(job.custom_id, job.line)),
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
    store.event(Event.CARRIED, f"{n} result(s) from {earlier}")
