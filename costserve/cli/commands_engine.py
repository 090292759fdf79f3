"""Commands that plan, measure and serve: `plan`, `run-local`, `calibrate`, `profile`, `worker`, `scheduler`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from costserve.cli.app import app
from costserve.cli.help import DEFAULT_MODEL, ENGINE, MODEL_HELP, PLAN, SCHEDULE, command
from costserve.cli.options import AvailableOption, CloudsOption, broker_option, build_request, cli_settings, cloud_list
from costserve.cli.output import fail, json_mode, one_line_errors


@command(app, PLAN, "costserve plan examples/jobs.jsonl --model Llama-3.1-8B --deadline 8h --budget 40")
def plan(
    jobs: Annotated[Optional[Path], typer.Argument(help="job file (JSON Lines)", show_default="or --workload")] = None,
    workload: Annotated[Optional[Path], typer.Option(help='workload JSON: {"classes": [{"input_tokens", "output_tokens", "count"}]}')] = None,
    model: Annotated[Optional[str], typer.Option(help=MODEL_HELP, show_default="the model the job file names, else " + DEFAULT_MODEL)] = None,
    deadline: Annotated[str, typer.Option(help="finish within this duration: 8h, 90m, 1d (a unit is required)")] = "8h",
    budget: Annotated[Optional[float], typer.Option(help="most to spend, $", show_default="no limit")] = None,
    quality: Annotated[float, typer.Option(min=0.0, max=1.0, help="least predicted quality vs the 16-bit model, 0-1 (1.0: no quantization)")] = 0.99,
    spot: Annotated[bool, typer.Option("--spot", help="allow spot instances")] = False,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="meet the deadline (and budget) with this probability: the plan adds the margin its predictions' spread asks for")] = 0.9,
    local: Annotated[bool, typer.Option("--local", help="plan the run on this machine (what `submit` runs by default) instead of a cloud fleet")] = False,
    available: AvailableOption = None,
    clouds: CloudsOption = None,
    baselines: Annotated[bool, typer.Option(help="also plan the baselines and show what each would cost")] = True,
    profiles: Annotated[Optional[Path], typer.Option(help="measured throughputs, Mélange format (gpu_info/tputs + edges)", show_default="the roofline cost model")] = None,
    melange: Annotated[Optional[Path], typer.Option(help="instead, plan Mélange's own input (workload_distribution, total_request_rate, gpu_info) as a steady hour")] = None,
    out: Annotated[Optional[Path], typer.Option(help="write the Plan as JSON here")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the Plan as JSON on stdout instead of tables")] = False,
) -> None:
    """Find the cheapest GPU fleet that meets the deadline, budget and quality, and compare baselines."""
    from costserve.cli.plan import run_melange, run_plan

    if melange is not None:
        if jobs is not None or workload is not None:
            fail("--melange plans Mélange's own input: give no job file or --workload with it")
        with json_mode(json_out), one_line_errors():
            run_melange(melange, json_out)
        return
    if (jobs is None) == (workload is None):
        fail("give a job file, --workload W.json or --melange M.json (one of them)")
    with json_mode(json_out), one_line_errors():
        settings = cli_settings()
        request = build_request(settings, jobs=jobs, model=model, deadline=deadline, budget=budget, quality=quality,
                                spot=spot, available=available, clouds=cloud_list(clouds), plan_only=True,
                                confidence=confidence, backend="local" if local else "sky")
        run_plan(request, workload, out, baselines, profiles, json_out)


@command(app, ENGINE, "costserve run-local examples/jobs.jsonl --replica examples/replica-mixed.json", name="run-local")
def run_local(
    jobs: Annotated[Path, typer.Argument(help="job file (JSON Lines)")],
    replica: Annotated[Optional[Path], typer.Option(help="replica JSON (stages, bits, micro-batches) or a plan.json", show_default="one fp32 stage")] = None,
    model: Annotated[Optional[str], typer.Option(help=MODEL_HELP, show_default=DEFAULT_MODEL)] = None,
    out: Annotated[Optional[Path], typer.Option(help="results file; failed requests go beside it", show_default="JOBS.results.jsonl")] = None,
) -> None:
    """Run a job file through one engine replica on this machine, without a queue (development); OpenAI Batch output."""
    from costserve.cli.engine import run_local as run

    raise typer.Exit(run(jobs, replica, model, out))


@command(app, ENGINE, "costserve calibrate --model SmolLM2-135M")
def calibrate(
    model: Annotated[Optional[str], typer.Option(help=MODEL_HELP, show_default=DEFAULT_MODEL)] = None,
    replica: Annotated[Optional[Path], typer.Option(help="instead, measure this replica's perplexity and the predicted one")] = None,
    out: Annotated[Optional[Path], typer.Option(help="profile file", show_default="$COSTSERVE_HOME/quality/MODEL.json")] = None,
) -> None:
    """Measure each layer's perplexity sensitivity at 16/8/4 bits and write the model's quality profile."""
    from costserve.cli.quality import run_quality_profile

    run_quality_profile(model, replica, out)


@command(app, ENGINE, "costserve profile --device cpu")
def profile(
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    model: Annotated[Optional[str], typer.Option(help=MODEL_HELP, show_default=DEFAULT_MODEL)] = None,
    out: Annotated[Optional[Path], typer.Option(help="profile file", show_default="$COSTSERVE_HOME/profiles/DEVICE-MODEL.json")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="fewer batch sizes, one context, 3 repeats: about 20 s for a small model")] = False,
) -> None:
    """Time decoder layers at several batch sizes, contexts and bit-widths; write a device profile."""
    from costserve.cli.profile import run_profile

    if device not in ("cpu", "cuda"):
        fail(f"--device {device}: use cpu or cuda")
    with one_line_errors():
        run_profile(device, model, out, quick)


@command(app, ENGINE, "COSTSERVE_BROKER=redis://:PASSWORD@host:6379/0 costserve worker --queue local-RUN")
def worker(
    queue: Annotated[str, typer.Option(help="queue to consume: local-RUN or gN-RUN (a run's own queue)")],
    broker: Annotated[str, typer.Option(envvar="COSTSERVE_BROKER", callback=broker_option, help="Celery broker URL; $COSTSERVE_BROKER keeps a password out of `ps`")],
    replica: Annotated[Optional[Path], typer.Option(help="replica JSON this worker runs", show_default="one fp32 stage")] = None,
    model: Annotated[Optional[str], typer.Option(help=MODEL_HELP, show_default=DEFAULT_MODEL)] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="replicas, one worker process each")] = 1,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch threads per replica", show_default="the CPUs this process is given / concurrency")] = None,
    shard_size: Annotated[int, typer.Option(min=1, help="the run's jobs per shard: the worker holds enough shards to keep its replica's batch full")] = 32,
) -> None:
    """A Celery worker for one queue (started by `submit`; run it by hand on another machine to add capacity)."""
    from costserve.cli.worker import run_worker

    run_worker(queue, broker, replica, model, concurrency, threads, shard_size)


@command(app, SCHEDULE, "costserve scheduler")
def scheduler(
    broker: Annotated[Optional[str], typer.Option(envvar="COSTSERVE_BROKER", callback=broker_option, help="broker URL", show_default="an embedded Redis in $COSTSERVE_HOME/scheduler")] = None,
) -> None:
    """Run Celery beat over the stored schedules; each fire runs `costserve submit --yes` (until Ctrl-C)."""
    from costserve.schedule.beat import run_scheduler

    with one_line_errors():  # a second scheduler, an unreadable schedules file: one line
        run_scheduler(broker)
