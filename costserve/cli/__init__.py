"""The `costserve` command line. Heavy libraries (pandas, sky, torch) are imported inside commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from costserve import notices
from costserve.cli.catalog import catalog_app
from costserve.cli.options import broker_option, build_request, cli_settings, settings_broker
from costserve.cli.output import fail, one_line_errors
from costserve.cli.schedule import schedule_app
from costserve.cli.terminal import TerminalNotices
from workers.cpu import prefer_passive_omp

notices.install(TerminalNotices())  # run orchestration reports through costserve.notices; the CLI shows it here
prefer_passive_omp()  # before any command imports torch: workers and engines started from here inherit it

app = typer.Typer(
    name="costserve",
    help="Batch LLM inference on the cheapest mix of cloud GPUs that meets a deadline, quality target and budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(catalog_app, name="catalog")
app.add_typer(schedule_app, name="schedule")


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="job files (JSON Lines: OpenAI Batch or plain form)")],
    max_errors: Annotated[Optional[int], typer.Option(help="bad lines to print before only counting them [config: max_errors]")] = None,
    default_max_tokens: Annotated[Optional[int], typer.Option(help="output tokens for jobs without max_tokens [config]")] = None,
) -> None:
    """Check job files line by line and summarise them: jobs, models, token distributions.

    Each bad line is reported as FILE:LINE: field: problem. Exits 1 when any line is bad.
    """
    from costserve.cli.validate import run_validate

    raise typer.Exit(run_validate(files, max_errors, default_max_tokens))


@app.command()
def plan(
    jobs: Annotated[Optional[Path], typer.Argument(help="job file (JSON Lines)")] = None,
    workload: Annotated[Optional[Path], typer.Option(help='workload JSON: {"classes": [{"input_tokens", "output_tokens", "count"}]}')] = None,
    model: Annotated[Optional[str], typer.Option(help="model from `costserve catalog models` [config: default_model]")] = None,
    deadline: Annotated[str, typer.Option(help="finish within, e.g. 8h, 90m, 1d")] = "8h",
    budget: Annotated[Optional[float], typer.Option(help="most to spend, $")] = None,
    quality: Annotated[float, typer.Option(help="least quality vs the 16-bit model (1.0: no quantization)")] = 0.99,
    spot: Annotated[bool, typer.Option("--spot", help="allow spot instances")] = False,
    available: Annotated[Optional[str], typer.Option(help="cap GPUs per type, e.g. H100=2,L4=16")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the Plan as JSON here")] = None,
    baselines: Annotated[bool, typer.Option(help="also plan the baselines and show savings")] = True,
    profiles: Annotated[Optional[Path], typer.Option(help="measured throughputs, Mélange format (gpu_info/tputs + edges)")] = None,
    clouds: Annotated[Optional[str], typer.Option(help="only these clouds' offerings, e.g. aws,gcp (the accounts you have)")] = None,
) -> None:
    """Find the cheapest GPU fleet that meets the deadline, budget and quality, and compare baselines."""
    from costserve.cli.plan import run_plan

    if (jobs is None) == (workload is None):
        fail("give a job file or --workload W.json (one of them)")
    with one_line_errors():
        settings = cli_settings()
        request = build_request(settings, jobs=jobs, model=model, deadline=deadline, budget=budget, quality=quality,
                                spot=spot, available=available, clouds=tuple(clouds.split(",")) if clouds else None)
        run_plan(request, workload, json_out, baselines, profiles)


@app.command("run-local")
def run_local(
    jobs: Annotated[Path, typer.Argument(help="job file (JSON Lines)")],
    replica: Annotated[Optional[Path], typer.Option(help="replica JSON (stages, bits, micro-batches) or a plan.json; default one fp32 stage")] = None,
    model: Annotated[Optional[str], typer.Option(help="HF model dir, .gguf file, or the embedded SmolLM2-135M [config: default_model]")] = None,
    out: Annotated[Optional[Path], typer.Option(help="results file [default: JOBS.results.jsonl]")] = None,
) -> None:
    """Run a job file through one engine replica on this machine; results in OpenAI Batch output format."""
    from costserve.cli.engine import run_local as run

    raise typer.Exit(run(jobs, replica, model, out))


@app.command()
def calibrate(
    model: Annotated[Optional[str], typer.Option(help="model to calibrate [config: default_model]")] = None,
    replica: Annotated[Optional[Path], typer.Option(help="instead, measure this replica's perplexity and the predicted one")] = None,
    out: Annotated[Optional[Path], typer.Option(help="profile file [default: $COSTSERVE_HOME/quality/MODEL.json]")] = None,
) -> None:
    """Measure each layer's perplexity sensitivity at 16/8/4 bits and write the model's quality profile."""
    from costserve.cli.calibrate import run_calibrate

    run_calibrate(model, replica, out)


@app.command()
def profile(
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    model: Annotated[Optional[str], typer.Option(help="model whose layers are timed [config: default_model]")] = None,
    out: Annotated[Optional[Path], typer.Option(help="profile file [default: $COSTSERVE_HOME/profiles/DEVICE-MODEL.json]")] = None,
) -> None:
    """Time decoder layers at several batch sizes, contexts and bit-widths; write a device profile."""
    from costserve.cli.profile import run_profile

    if device not in ("cpu", "cuda"):
        fail(f"--device {device}: use cpu or cuda")
    run_profile(device, model, out)


@app.command()
def submit(
    jobs: Annotated[Path, typer.Argument(help="job file (JSON Lines)")],
    model: Annotated[Optional[str], typer.Option(help="HF model dir, .gguf file, or the embedded SmolLM2-135M [config: default_model]")] = None,
    quality: Annotated[float, typer.Option(help="least predicted quality vs the 16-bit model; picks the bits per layer")] = 0.99,
    broker: Annotated[Optional[str], typer.Option(envvar="COSTSERVE_BROKER", callback=broker_option, help="Celery broker URL, e.g. redis://:PASSWORD@host:6379/0 (or $COSTSERVE_BROKER, which keeps a password out of `ps`) [default: local: an embedded Redis per run; sky: a Redis head node]")] = None,
    out: Annotated[Optional[Path], typer.Option(help="results file [default: JOBS.results.jsonl]")] = None,
    shard_size: Annotated[int, typer.Option(min=1, help="jobs per queued shard")] = 32,
    workers: Annotated[int, typer.Option(min=1, help="local worker processes")] = 1,
    stages: Annotated[int, typer.Option(min=1, help="pipeline stages per replica (one process each)")] = 2,
    replica: Annotated[Optional[Path], typer.Option(help="run this replica JSON instead of the one chosen from --quality")] = None,
    backend: Annotated[str, typer.Option(help="local (this machine) or sky (a SkyPilot fleet from the plan)")] = "local",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="sky: plan, write the SkyPilot tasks and run SkyPilot's dryrun offline; launch nothing")] = False,
    deadline: Annotated[str, typer.Option(help="finish within, e.g. 8h (local: the plan's deadline; sky: the fleet's)")] = "8h",
    budget: Annotated[Optional[float], typer.Option(help="most to spend, $ (local: the predicted cost must fit)")] = None,
    spot: Annotated[bool, typer.Option("--spot", help="sky: allow spot instances")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="start without asking for confirmation")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="run the valid lines; bad ones go to the run's rejected.jsonl")] = False,
    model_override: Annotated[bool, typer.Option("--model-override", help="serve jobs whose model names another model with this one (counted in a warning) instead of rejecting them")] = False,
) -> None:
    """Run a job file end to end: on this machine (run store, Redis queue, local workers), or plan a SkyPilot fleet."""
    from costserve.cli.submit import submit as run_submit

    if backend not in ("local", "sky"):
        fail(f"--backend: {backend!r} is not a backend (local or sky)")
    with one_line_errors():
        settings = cli_settings()
        request = build_request(settings, jobs=jobs, model=model, deadline=deadline, budget=budget, quality=quality,
                                spot=spot, backend=backend, workers=workers, stages=stages, shard_size=shard_size,
                                replica=replica, out=out, skip_invalid=skip_invalid, model_override=model_override)
        code = run_submit(request, settings, broker, yes, dry_run)
    raise typer.Exit(code)


@app.command()
def runs() -> None:
    """List the runs in $COSTSERVE_HOME/runs: jobs, results so far, last event."""
    from costserve.cli.runs import show_runs

    show_runs()


@app.command()
def status(run: Annotated[str, typer.Argument(help="run id (see `costserve runs`)")]) -> None:
    """Shards by state, results so far and the latest events of a run."""
    from costserve.cli.runs import show_status

    show_status(run)


@app.command()
def results(
    run: Annotated[str, typer.Argument(help="run id (see `costserve runs`)")],
    out: Annotated[Optional[Path], typer.Option(help="write here instead of standard output")] = None,
) -> None:
    """A run's results (OpenAI Batch output lines) in input order; exits 1 while some jobs have none."""
    from costserve.cli.runs import write_results

    raise typer.Exit(write_results(run, out))


@app.command()
def resume(
    run: Annotated[str, typer.Argument(help="run id (see `costserve runs`)")],
    broker: Annotated[Optional[str], typer.Option(envvar="COSTSERVE_BROKER", callback=broker_option, help="the broker URL again, if the run used --broker (or $COSTSERVE_BROKER) [default: a new embedded Redis]")] = None,
    budget: Annotated[Optional[float], typer.Option(help="a new total budget, $ (spend so far counts) [default: the run's]")] = None,
    deadline: Annotated[Optional[str], typer.Option(help="SkyPilot runs: finish within this from now, e.g. 2h [default: what is left of the run's]")] = None,
) -> None:
    """Finish a run that stopped (driver killed, budget reached, cancelled): finished work is kept, the rest runs.

    A SkyPilot run's leftover clusters are torn down and the unfinished jobs re-planned and re-provisioned.
    """
    from costserve.cli.runs import open_run
    from costserve.durations import parse_duration
    from costserve.run.resume import resume_run

    try:
        deadline_s = parse_duration(deadline) if deadline is not None else None
    except ValueError as exc:
        fail(f"--deadline: {exc}")
    with one_line_errors():
        code = resume_run(open_run(run), broker or settings_broker(cli_settings()), budget, deadline_s)
    raise typer.Exit(code)


@app.command()
def cancel(run: Annotated[str, typer.Argument(help="run id (see `costserve runs`)")]) -> None:
    """Stop a run and its fleet, keeping every finished result."""
    from costserve.cli.runs import open_run
    from costserve.run.cancel import cancel_run

    with one_line_errors():
        code = cancel_run(open_run(run))
    raise typer.Exit(code)


@app.command()
def report(
    run: Annotated[Optional[str], typer.Argument(help="run id (see `costserve runs`)")] = None,
    html: Annotated[Optional[Path], typer.Option(help="write a self-contained HTML report (tables and plots) here")] = None,
    csv: Annotated[Optional[Path], typer.Option(help="write the planned-vs-actual table as CSV here")] = None,
    since: Annotated[Optional[str], typer.Option(help="instead, every run of the last e.g. 30d: the nightly trend")] = None,
) -> None:
    """Cost report of a run: planned vs actual per fleet group, $/1M output tokens, makespan, baselines."""
    from costserve.cli.report import show_run_report, show_trend

    if (run is None) == (since is None):
        fail("give a run id or --since PERIOD (one of them)")
    if since is not None:
        show_trend(since, html, csv)
    else:
        show_run_report(run, html, csv)  # type: ignore[arg-type]


@app.command()
def scheduler(
    broker: Annotated[Optional[str], typer.Option(envvar="COSTSERVE_BROKER", callback=broker_option, help="broker URL [default: an embedded Redis in $COSTSERVE_HOME/scheduler]")] = None,
) -> None:
    """Run Celery beat over the stored schedules; each fire runs `costserve submit --yes` (until Ctrl-C)."""
    from costserve.schedule.beat import run_scheduler

    run_scheduler(broker)


@app.command()
def worker(
    queue: Annotated[str, typer.Option(help="queue to consume")],
    broker: Annotated[str, typer.Option(envvar="COSTSERVE_BROKER", callback=broker_option, help="Celery broker URL (or $COSTSERVE_BROKER, which keeps a password out of `ps`)")],
    replica: Annotated[Optional[Path], typer.Option(help="replica JSON this worker runs")] = None,
    model: Annotated[Optional[str], typer.Option(help="model dir or .gguf [default: the embedded SmolLM2-135M]")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="worker processes, one replica each")] = 1,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch threads per replica [default: the CPUs this process is given ÷ concurrency]")] = None,
) -> None:
    """A Celery worker for one queue (started by `submit`; run it by hand on another machine to add capacity)."""
    from costserve.cli.worker import run_worker

    run_worker(queue, broker, replica, model, concurrency, threads)


@app.command()
def version() -> None:
    """Print costserve's version."""
    from costserve import __version__

    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
