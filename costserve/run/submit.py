"""The submit use case: plan a BatchRequest, ask, create the run, shard it and run it here or on a SkyPilot fleet.

`submit()` is the one place a submit is orchestrated. The CLI calls it in its own process with
the terminal as its `SubmitView`; the Python API, the scheduler and `--detach` start a driver
process that calls it with the typed request (`run/spawn.py`). What a caller shows and decides
along the way (bad lines, the plan, the confirmation, the run's id once it exists) goes
through the view; progress lines go through `costserve.notices`. Refusals are named errors:
NotConfirmed, OverBudget, JobFileRejected, PlanningError.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from costserve.durations import format_duration, format_money
from costserve.errors import NotConfirmed, OverBudget, RunStopped
from costserve.notices import say, step, warn
from costserve.request import BatchRequest
from costserve.run.broker_url import configured_broker
from costserve.run.submitted import Run

if TYPE_CHECKING:
    from costserve.config import Settings
    from costserve.jobs.reader import LineError
    from costserve.jobs.rules import ModelRules
    from costserve.jobs.scan import JobScan
    from solver.plan import Plan


class SubmitView(Protocol):
    """What the caller of a submit sees and decides on the way (the terminal, a driver's JSON lines)."""

    def bad_line(self, error: LineError) -> None:
        """A job file line that was rejected (file, line, field, problem)."""

    def plan(self, plan: Plan, title: str) -> None:
        """The plan, before anything is created."""

    def confirm(self, what: str) -> bool:
        """Whether to go ahead with `what` (launching, running); False stops the submit (NotConfirmed)."""

    def created(self, run: Run) -> None:
        """The run exists: its id and directory are final."""

    def dry_run(self, run: Run, rows: list[dict[str, Any]]) -> None:
        """A dry run's SkyPilot tasks, one row each (task, accepted, nodes, what SkyPilot chose)."""


class GoAhead:
    """The view of a submit nobody watches: shows nothing, confirms everything (the request was confirmed already)."""

    def bad_line(self, error: LineError) -> None:
        """Dropped: the count is in JobFileRejected or the run's rejected.jsonl."""

    def plan(self, plan: Plan, title: str) -> None:
        """Dropped: the plan is in the run's plan.json."""

    def confirm(self, what: str) -> bool:
        """Always."""
        return True

    def created(self, run: Run) -> None:
        """Dropped."""

    def dry_run(self, run: Run, rows: list[dict[str, Any]]) -> None:
        """Dropped: the task files are in the run's sky/ directory."""


def submit(
    request: BatchRequest,
    settings: Settings,
    broker: str | None = None,
    view: SubmitView | None = None,
    dry_run: bool = False,
) -> Run:
    """Run `request` end to end and return its Run with its exit code (0, or 1 when some jobs failed).

    `broker` (default the `broker` setting, else an embedded Redis or a head node) is a Celery broker URL. Raises the
    named errors: JobFileRejected, OverBudget, NotConfirmed, PlanningError before a run exists; RunStopped (resumable)
    when it stops before every job has a result."""
    from costserve.jobs.scan import scan_jobs
    from costserve.run.outputs import check_outputs

    check_outputs(request)  # before anything runs: the results are written only at the end
    view = view or GoAhead()
    rules = _prepared_model(request)
    scan = scan_jobs(request, settings.default_max_tokens, view.bad_line, rules)  # pass 1 over the job file
    broker = broker or configured_broker(settings)
    if request.backend == "sky":
        return _submit_sky(request, settings, scan, broker, view, dry_run)
    return _submit_local(request, settings, scan, broker, view)


def _prepared_model(request: BatchRequest) -> ModelRules:
    """The request's model rules, converting a GGUF model first if this is its first use (said before and after: it
    takes about half a minute and is silent otherwise)."""
    from costserve.jobs.scan import model_rules
    from workers.model_source import pending_conversion

    gguf = pending_conversion(request.model) if request.backend == "local" else None
    if gguf is None:
        return model_rules(request)
    started = time.monotonic()
    say(f"converting {gguf.name} to safetensors (first use only, about 30s: dequantising to fp32)...")
    with step(f"converting {gguf.name} (first use only)..."):
        rules = model_rules(request)
    say(f"model converted in {format_duration(time.monotonic() - started)} -> {rules.tokenizer_dir}")
    return rules


def _profile_first(model: str) -> None:
    """`--profile-first`: a quick profile of `model` on this machine unless one exists (the plan then times the replica
    from it instead of the roofline)."""
    from costserve.planning.batch import cpu_profile_for
    from costserve.planning.machine_profile import profile_machine
    from workers.model_source import model_name

    found, path = cpu_profile_for(model_name(model))
    if found is not None:
        say(f"--profile-first: this machine already has a profile of the model ({path})")
        return
    say("--profile-first: profiling this machine with the model's layers first (about 20 s)...")
    with step("profiling this machine (--profile-first)..."):
        path, _ = profile_machine("cpu", model, quick=True)
    say(f"--profile-first: profile written to {path}")


def _confirm(view: SubmitView, what: str) -> None:
    if not view.confirm(what):
        raise NotConfirmed(what)


def _submit_local(
    request: BatchRequest, settings: Settings, scan: JobScan, broker: str | None, view: SubmitView
) -> Run:
    from costserve.planning.local import plan_local
    from costserve.run.broker_watch import require_broker
    from costserve.run.local import execute_local
    from costserve.run.prepare import LOCAL_QUEUE, create_run

    model_dir = scan.rules.tokenizer_dir if scan.rules is not None else None  # resolved once, by the model's rules
    if request.profile_first:
        _profile_first(str(request.model))
    with step("planning (this machine, and the cloud fleet and baselines for comparison)..."):
        local = plan_local(request, str(request.model), scan.workload, settings.local_cpu_price_per_hour, model_dir)
    plan = local.plan
    view.plan(plan, f"{scan.jobs:,} jobs of {local.model_name} on this machine")
    _say_local_prediction(plan, local.guess)
    if plan.makespan_s > request.deadline_s:
        warn(
            f"predicted to take {format_duration(plan.makespan_s)}, past the --deadline of "
            f"{format_duration(request.deadline_s)}: this machine cannot run it faster; it runs anyway "
            "(a later deadline, or --backend sky for a fleet that meets it)"
        )
    if request.budget is not None and plan.cost > request.budget:
        raise OverBudget(plan.cost, request.budget, "on this machine")
    _confirm(view, f"run {scan.jobs:,} jobs on this machine")
    require_broker(broker)
    replica = {f"replica-{LOCAL_QUEUE}.json": local.replica.model_dump_json(indent=2)}
    run = Run(create_run(request, scan, plan, files=replica), request, plan, local.model_dir)
    view.created(run)
    say(f"run {run.id}: {scan.jobs} jobs of {local.model_name} on this machine, replica {local.replica.summary()}")
    _prepare(run, request, scan, settings)
    run.exit_code = execute_local(run.store, broker, model_dir=run.model_dir)
    return run


def _prepare(run: Run, request: BatchRequest, scan: JobScan, settings: Settings) -> None:
    """Pass 2 into the created run's shards. A stop meanwhile (a signal) is recorded, and `resume` completes it."""
    from costserve.run.kill_points import RUN_RECORDED, kill_point
    from costserve.run.prepare import prepare_shards

    kill_point(RUN_RECORDED)
    try:
        prepare_shards(run.store, request, scan, run.plan, settings.default_max_tokens)
    except RunStopped as stop:
        line = f"{stop} while writing its shards"
        run.store.record_stop(stop.reason, line)
        raise stop.restated(
            f"run {run.id} {line}; `costserve resume {run.id}` finishes preparing and runs it"
        ) from None


def _say_local_prediction(plan: Plan, guess: bool) -> None:
    """Where the local prediction comes from: the machine's price, and a calibration, a profile or a roofline guess."""
    group = plan.groups[0]
    say(
        f"this machine is priced at {format_money(group.price_per_hour)}/h: {group.region} "
        "(the local_cpu_price_per_hour setting overrides it)"
    )
    if group.calibration:
        say(
            f"start-up {format_duration(group.startup_s)} and work x{group.work_factor:.2f} of the "
            f"model: {group.calibration} of this machine, model and replica"
        )
    elif guess:
        say(
            "no profile or earlier run of this model on this machine: the prediction is a roofline guess (start-up "
            "from the model's size); this run calibrates the next (or pass --profile-first, or run `costserve "
            "profile` first)"
        )


def _submit_sky(
    request: BatchRequest, settings: Settings, scan: JobScan, broker: str | None, view: SubmitView, dry_run: bool
) -> Run:
    from costserve.planning.batch import plan_request
    from costserve.run.broker_watch import require_broker
    from costserve.run.dry_run import DRYRUN_CLOUDS
    from costserve.run.prepare import create_run
    from costserve.run.sky import launch_sky
    from costserve.run.sky_tasks import node_tasks

    if request.plan_file is not None:
        from costserve.run.given_plan import given_plan

        plan, request = given_plan(request, scan.sha256)
        say(f"--plan {request.plan_file}: running that plan (its job file, model and prices are unchanged)")
    else:
        if dry_run:
            say(f"offline dryrun: planning over {', '.join(DRYRUN_CLOUDS)} offerings (the account the dryrun fakes)")
            request = request.model_copy(update={"clouds": DRYRUN_CLOUDS})
        with step("planning (fleet MILP and baselines)..."):
            plan = plan_request(request, scan.workload, check_clouds=not dry_run)  # a dry run's account is faked
    view.plan(plan, f"fleet for {scan.jobs:,} jobs of {plan.model}")
    if dry_run:  # a gated model without a token is a warning there
        return _dry_run(request, scan, plan, view)
    node_tasks(plan.model, request.model_source, plan=plan)  # a gated download without a token stops here, first
    require_broker(broker, "; nothing was launched")
    instances = sum(g.count for g in plan.groups) + (0 if broker else 1)
    _confirm(view, f"launch {instances} cloud instance(s), predicted {format_money(plan.cost)}")
    run = Run(create_run(request, scan, plan), request, plan)
    view.created(run)
    _prepare(run, request, scan, settings)
    run.exit_code = launch_sky(run.store, request, plan, broker)
    return run


def _dry_run(request: BatchRequest, scan: JobScan, plan: Plan, view: SubmitView) -> Run:
    from costserve.run.dry_run import dryrun_run
    from costserve.run.prepare import create_run

    run = Run(create_run(request, scan, plan, dry_run=True), request, plan)
    view.created(run)
    rows = dryrun_run(run.store, plan, request.model_source)
    view.dry_run(run, rows)
    run.exit_code = 0 if all(r["accepted"].startswith("yes") for r in rows) else 1
    return run
