"""`costserve submit`: plan and confirm a BatchRequest, then run it here (local workers) or on a SkyPilot fleet."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from costserve.cli.announce import RunAnnouncer
from costserve.cli.options import settings_broker
from costserve.cli.output import BadLinePrinter, console, err_console, fail, frame_table
from costserve.cli.plan_view import show_plan
from costserve.cli.terminal import say
from costserve.config import Settings
from costserve.durations import format_duration, format_money
from costserve.errors import CostserveError
from costserve.request import BatchRequest


def confirm(yes: bool, what: str) -> None:
    """Ask before starting unless --yes; without a terminal to ask on, --yes is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"about to {what}: pass --yes to go ahead without a prompt")
    if not typer.confirm(f"{what}?", default=True):
        fail("nothing was run", code=1)


def submit(
    request: BatchRequest,
    settings: Settings,
    broker: str | None,
    yes: bool,
    dry_run: bool,
    json_out: bool = False,
    output_dir: Path | None = None,
) -> int:
    """Run `request` end to end; the exit code. Named errors travel up to the caller's one_line_errors.

    With `json_out`, stdout gets one JSON line when the run is created (its id and paths) and one when it ends
    (status, exit code, counts); `output_dir` also receives the report files."""
    from costserve.run.prepare import scan_jobs

    bad = BadLinePrinter(err_console, settings.max_errors)
    rules = _prepared_model(request)
    scan = scan_jobs(request, settings.default_max_tokens, bad, rules)  # pass 1 over the job file
    broker = broker or settings_broker(settings)
    announce = RunAnnouncer(request, json_out)
    try:
        if request.backend == "sky":
            code = _submit_sky(request, settings, scan, broker, yes, dry_run, announce)
        else:
            code = _submit_local(request, settings, scan, broker, yes, announce)
    except CostserveError as exc:
        announce.ended(getattr(exc, "exit_code", 2), str(exc))
        raise
    announce.ended(code, None, output_dir)
    return code


def _prepared_model(request: BatchRequest):  # type: ignore[no-untyped-def]
    """The request's model rules, converting a GGUF model first if this is its first use (said before and after: it
    takes about half a minute and is silent otherwise)."""
    import os
    import time

    from costserve.run.prepare import model_rules
    from workers.model_source import pending_conversion

    if not err_console.is_terminal:  # transformers' tqdm bars would fill a log with carriage returns
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    gguf = pending_conversion(request.model) if request.backend == "local" else None
    if gguf is None:
        return model_rules(request)
    started = time.monotonic()
    say(f"converting {gguf.name} to safetensors (first use only, about 30s: dequantising to fp32)...")
    with console.status(f"converting {gguf.name} (first use only)..."):
        rules = model_rules(request)
    say(f"model converted in {format_duration(time.monotonic() - started)} -> {rules.tokenizer_dir}")
    return rules


def _profile_first(model: str) -> None:
    """`--profile-first`: a quick profile of `model` on this machine unless one exists (the plan then times the replica
    from it instead of the roofline)."""
    from costserve.cli.profile import run_profile
    from costserve.planning.batch import cpu_profile_for
    from workers.model_source import model_name

    found, path = cpu_profile_for(model_name(model))
    if found is not None:
        say(f"--profile-first: this machine already has a profile of the model ({path})")
        return
    say("--profile-first: profiling this machine with the model's layers first (about 20 s)...")
    run_profile("cpu", model, None, quick=True)


def _submit_local(
    request: BatchRequest,
    settings: Settings,
    scan,
    broker: str | None,
    yes: bool,  # type: ignore[no-untyped-def]
    announce: RunAnnouncer,
) -> int:
    from costserve.planning.local import plan_local
    from costserve.run.local import QUEUE, execute_local, require_broker
    from costserve.run.prepare import create_run, write_shards

    if request.profile_first:
        _profile_first(str(request.model))
    with console.status("planning (this machine, and the cloud fleet and baselines for comparison)..."):
        local = plan_local(request, str(request.model), scan.workload, settings.local_cpu_price_per_hour)
    plan = local.plan
    show_plan(plan, f"{scan.jobs:,} jobs of {local.model_name} on this machine")
    say(
        f"this machine is priced at {format_money(plan.groups[0].price_per_hour)}/h: {plan.groups[0].region} "
        "(the local_cpu_price_per_hour setting overrides it)"
    )
    if plan.groups[0].calibration:
        say(
            f"start-up {format_duration(plan.groups[0].startup_s)} and work x{plan.groups[0].work_factor:.2f} of the "
            f"model: {plan.groups[0].calibration} of this machine, model and replica"
        )
    elif local.guess:
        say(
            "no profile or earlier run of this model on this machine: the prediction is a roofline guess (start-up "
            "from the model's size); this run calibrates the next (or pass --profile-first, or run `costserve profile` "
            "first)"
        )
    if request.budget is not None and plan.cost > request.budget:
        fail(
            f"--budget {format_money(request.budget)}: the predicted cost on this machine is {format_money(plan.cost)}; "
            "raise --budget"
        )
    confirm(yes, f"run {scan.jobs:,} jobs on this machine")
    require_broker(broker)
    store = create_run(request, scan, plan)
    store.write_json(f"replica-{QUEUE}.json", local.replica.model_dump_json(indent=2))
    announce.created(store)
    console.print(
        f"run [bold]{store.id}[/]: {scan.jobs} jobs of {local.model_name} on this machine, "
        f"replica {local.replica.summary()}"
    )
    write_shards(store, request, scan, settings.default_max_tokens, lambda _: QUEUE)  # pass 2
    return execute_local(store, broker)


def _submit_sky(
    request: BatchRequest,
    settings: Settings,
    scan,
    broker: str | None,
    yes: bool,
    dry_run: bool,  # type: ignore[no-untyped-def]
    announce: RunAnnouncer,
) -> int:
    from costserve.jobs.assignment import GroupAssigner
    from costserve.planning.batch import plan_request
    from costserve.run.local import require_broker
    from costserve.run.prepare import create_run, write_shards
    from costserve.run.sky import launch_sky
    from costserve.run.sky_dryrun import DRYRUN_CLOUDS
    from costserve.run.sky_tasks import node_tasks

    if dry_run:
        console.print(
            f"offline dryrun: planning over {', '.join(DRYRUN_CLOUDS)} offerings (the account the dryrun fakes)"
        )
        request = request.model_copy(update={"clouds": DRYRUN_CLOUDS})
    with console.status("planning (fleet MILP and baselines)..."):
        plan = plan_request(request, scan.workload)
    show_plan(plan, f"fleet for {scan.jobs:,} jobs of {plan.model}")
    node_tasks(
        plan.model, request.model_source
    )  # a gated model without a token stops here, before anything is created or launched
    if dry_run:
        return _dry_run(request, scan, plan, announce)
    require_broker(broker, "; nothing was launched")
    confirm(
        yes,
        f"launch {sum(g.count for g in plan.groups) + (0 if broker else 1)} cloud instance(s), "
        f"predicted {format_money(plan.cost)}",
    )
    store = create_run(request, scan, plan)
    announce.created(store)
    assigner = GroupAssigner(plan.groups, {k.name: k.count for k in scan.workload.classes})
    write_shards(store, request, scan, settings.default_max_tokens, lambda job: f"g{assigner.group_of(job)}")  # pass 2
    return launch_sky(store, request, plan, broker)


def _dry_run(request: BatchRequest, scan, plan, announce: RunAnnouncer) -> int:  # type: ignore[no-untyped-def]
    import pandas as pd

    from costserve.run.prepare import create_run
    from costserve.run.sky_dryrun import dryrun_run

    store = create_run(request, scan, plan, dry_run=True)
    announce.created(store)
    rows = dryrun_run(store, plan, request.model_source)
    console.print(
        frame_table(
            pd.DataFrame(rows),
            f"run {store.id}: SkyPilot tasks (launch with `sky launch --secret COSTSERVE_BROKER FILE`)",
        )
    )
    console.print(f"task files: {store.dir / 'sky'}", markup=False)
    return 0 if all(r["accepted"] == "yes" for r in rows) else 1
