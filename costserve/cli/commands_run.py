"""Commands that run a batch: `submit`, `resume`, `cancel`, `validate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from costserve.cli.app import app
from costserve.cli.help import DEFAULT_MODEL, MODEL_HELP, RUN, command
from costserve.cli.options import AvailableOption, CloudsOption, broker_option, build_request, cli_settings, cloud_list
from costserve.cli.output import fail, json_mode, one_line_errors

BROKER_HELP = ("Celery broker URL, e.g. redis://:PASSWORD@host:6379/0; $COSTSERVE_BROKER keeps a password out of `ps`")


@command(app, RUN, "costserve submit examples/jobs.jsonl --deadline 2h --budget 1 --yes")
def submit(
    jobs: Annotated[Optional[Path], typer.Argument(help="job file (JSON Lines: OpenAI Batch or plain form)", show_default="or -i")] = None,
    input_file: Annotated[Optional[Path], typer.Option("--input", "-i", help="the job file, as vLLM's run-batch names it (instead of JOBS)")] = None,
    model: Annotated[Optional[str], typer.Option(help=MODEL_HELP, show_default="the model the job file names, else " + DEFAULT_MODEL)] = None,
    quality: Annotated[float, typer.Option(min=0.0, max=1.0, help="least predicted quality vs the 16-bit model, 0-1; picks the bits per layer")] = 0.99,
    deadline: Annotated[str, typer.Option(help="finish within this duration: 8h, 90m, 1d (a unit is required)")] = "8h",
    budget: Annotated[Optional[float], typer.Option(help="most to spend, $; the predicted cost must fit", show_default="no limit")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="results file (OpenAI Batch output lines)", show_default="JOBS.results.jsonl")] = None,
    errors_out: Annotated[Optional[Path], typer.Option(help="failed requests' file (OpenAI's error file)", show_default="beside --out: X.results.errors.jsonl")] = None,
    output_dir: Annotated[Optional[Path], typer.Option(help="write results.jsonl, errors.jsonl, report.html and report.csv into this directory (instead of --out/--errors-out)")] = None,
    resume_from: Annotated[Optional[Path], typer.Option(help="results of an earlier submit of this file: jobs with a result there are not run again, their lines are carried over")] = None,
    backend: Annotated[str, typer.Option(help="local (this machine) or sky (a SkyPilot fleet from the plan)")] = "local",
    workers: Annotated[int, typer.Option(min=1, help="local worker processes")] = 1,
    stages: Annotated[int, typer.Option(min=1, help="pipeline stages per local replica (one process each)")] = 2,
    shard_size: Annotated[int, typer.Option(min=1, help="jobs per queued shard")] = 32,
    replica: Annotated[Optional[Path], typer.Option(help="run this replica JSON instead of the one chosen from --quality", show_default="planned from --quality")] = None,
    broker: Annotated[Optional[str], typer.Option(envvar="COSTSERVE_BROKER", callback=broker_option, help=BROKER_HELP, show_default="local: an embedded Redis per run; sky: a Redis head node")] = None,
    spot: Annotated[bool, typer.Option("--spot", help="sky: allow spot instances")] = False,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="meet the deadline (and budget) with this probability: the plan adds the margin its predictions' spread asks for")] = 0.9,
    clouds: CloudsOption = None,
    available: AvailableOption = None,
    plan_file: Annotated[Optional[Path], typer.Option("--plan", help="sky: run this plan (`costserve plan --out plan.json`) as reviewed; refused if the job file, model or prices changed since")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="sky: plan, write the SkyPilot tasks and run SkyPilot's dryrun offline; launch nothing")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="start without asking for confirmation")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="run the valid lines; bad ones go to the run's rejected.jsonl")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="request fields costserve does not honour (n, logprobs, tools, ...) are errors, not warnings")] = False,
    model_override: Annotated[bool, typer.Option("--model-override", help="serve jobs whose model names another model with this one (counted in a warning) instead of rejecting them")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON lines on stdout: the run id and paths when it starts, the outcome when it ends (human output goes to stderr)")] = False,
    model_source: Annotated[Optional[str], typer.Option(help="sky: nodes take the weights from here (s3://…, gs://… or a directory) instead of downloading them from Hugging Face", show_default="Hugging Face")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="return once the run exists; the driver goes on in the background (log: the run's driver.log; needs --yes)")] = False,
    profile_first: Annotated[bool, typer.Option("--profile-first", help="local: if this machine has no profile of the model, take a quick one (about 20 s) so the plan is measured, not a roofline guess")] = False,
) -> None:
    """Run a job file end to end: plan it, ask, then run it on this machine (run store, Redis queue, local workers)
    or on a SkyPilot fleet; results in OpenAI Batch format and a cost report."""
    from costserve.cli.submit_view import submit_here

    if (jobs is None) == (input_file is None):
        fail("give the job file once: JOBS or -i/--input JOBS")
    jobs = jobs or input_file
    _check_backend_options(backend, model_source, profile_first, plan_file)
    if output_dir is not None:
        out, errors_out = _output_dir_files(output_dir, out, errors_out)
    with json_mode(json_out), one_line_errors():
        settings = cli_settings()
        request = build_request(settings, jobs=jobs, model=model, deadline=deadline, budget=budget, quality=quality,
                                spot=spot, confidence=confidence, clouds=cloud_list(clouds), available=available, backend=backend, workers=workers, stages=stages, shard_size=shard_size,
                                replica=replica, out=out, errors_out=errors_out, resume_from=resume_from,
                                skip_invalid=skip_invalid, strict=strict, model_override=model_override,
                                model_source=model_source, profile_first=profile_first, plan_file=plan_file)
        if detach:
            if not yes:
                fail("--detach: pass --yes too (a run in the background cannot ask for confirmation)")
            from costserve.cli.detach import detach_submit

            raise typer.Exit(detach_submit(request, broker, output_dir, json_out, dry_run))
        code = submit_here(request, settings, broker, yes, dry_run, json_out, output_dir)
    raise typer.Exit(code)


def _check_backend_options(backend: str, model_source: str | None, profile_first: bool, plan_file: Path | None) -> None:
    """One line for a backend costserve lacks, or an option the chosen backend does not use."""
    if backend not in ("local", "sky"):
        fail(f"--backend: {backend!r} is not a backend (local or sky)")
    if plan_file is not None and backend != "sky":
        fail("--plan: a plan from `costserve plan` is a cloud fleet; pass --backend sky with it")
    if model_source is not None and backend != "sky":
        fail("--model-source: only a SkyPilot fleet (--backend sky) downloads weights; here pass --model DIR")
    if profile_first and backend != "local":
        fail("--profile-first: it profiles this machine, which only a local run uses (--backend local)")


def _output_dir_files(output_dir: Path, out: Path | None, errors_out: Path | None) -> tuple[Path, Path]:
    """The results and errors files inside --output-dir; one line when it is a file or --out/--errors-out came too."""
    if out is not None or errors_out is not None:
        fail("--output-dir: give it or --out/--errors-out, not both")
    if output_dir.exists() and not output_dir.is_dir():
        fail(f"--output-dir {output_dir}: is a file, not a directory (it would hold results.jsonl and the report)")
    return output_dir / "results.jsonl", output_dir / "errors.jsonl"


@command(app, RUN, "costserve resume 20261202-071530-ab12 --budget 60")
def resume(
    run: Annotated[str, typer.Argument(help="run id, or a unique prefix of it (see `costserve runs`)")],
    broker: Annotated[Optional[str], typer.Option(envvar="COSTSERVE_BROKER", callback=broker_option, help="the broker URL again, if the run used --broker", show_default="a new embedded Redis")] = None,
    budget: Annotated[Optional[float], typer.Option(help="a new total budget, $ (spend so far counts)", show_default="the run's")] = None,
    deadline: Annotated[Optional[str], typer.Option(help="SkyPilot runs: finish within this from now, e.g. 2h", show_default="what is left of the run's")] = None,
) -> None:
    """Finish a run that stopped (driver killed, budget reached, cancelled): finished work is kept, the rest runs.

    A SkyPilot run's leftover clusters are torn down and the unfinished jobs re-planned and re-provisioned.
    """
    from costserve.cli.runs import open_run
    from costserve.durations import parse_duration
    from costserve.run.broker_url import configured_broker
    from costserve.run.resume import resume_run
    from costserve.run.signals import stop_on_signals

    try:
        deadline_s = parse_duration(deadline) if deadline is not None else None
    except ValueError as exc:
        fail(f"--deadline: {exc}")
    with one_line_errors(), stop_on_signals():
        code = resume_run(open_run(run), broker or configured_broker(cli_settings()), budget, deadline_s)
    raise typer.Exit(code)


@command(app, RUN, "costserve cancel 20261202-071530-ab12")
def cancel(run: Annotated[str, typer.Argument(help="run id, or a unique prefix of it (see `costserve runs`)")]) -> None:
    """Stop a run and its fleet, keeping every finished result."""
    from costserve.cli.runs import open_run
    from costserve.run.cancel import cancel_run

    with one_line_errors():
        code = cancel_run(open_run(run))
    raise typer.Exit(code)


@command(app, RUN, "costserve validate examples/jobs.jsonl")
def validate(
    files: Annotated[list[Path], typer.Argument(help="job files (JSON Lines: OpenAI Batch or plain form)")],
    max_errors: Annotated[Optional[int], typer.Option(help="bad lines to print before only counting them", show_default="20; config max_errors")] = None,
    default_max_tokens: Annotated[Optional[int], typer.Option(help="output tokens for jobs without max_tokens", show_default="256; config default_max_tokens")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="request fields costserve does not honour are bad lines, not warnings")] = False,
) -> None:
    """Check job files line by line and summarise them: jobs, models, token distributions.

    Each bad line is reported as FILE:LINE: field: problem. Exits 1 when any line is bad.
    """
    from costserve.cli.validate import run_validate

    raise typer.Exit(run_validate(files, max_errors, default_max_tokens, strict))
