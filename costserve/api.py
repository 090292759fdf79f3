"""costserve from Python: `costserve.plan(...)` and `costserve.submit(...)`, the CLI's two main jobs as functions.

    import costserve
    plan = costserve.plan("jobs.jsonl", model="Llama-3.1-8B", deadline="8h", budget=40)
    print(plan.cost, plan.makespan_s)
    run = costserve.submit("jobs.jsonl", deadline="2h", budget=1)
    run.wait()
    for line in run.results():
        print(line["custom_id"], line["response"]["body"]["choices"][0]["message"]["content"])
    print(run.report()["totals"]["cost_usd"])

`plan` runs in the caller's process. `submit` starts a driver process with the typed request
(run/spawn.py), so the run has its own driver (worker processes, the embedded Redis and the live view
stay out of the caller's process) and survives nothing more than a CLI run would; it returns a
Run once the run exists. Errors are costserve's named errors (CostserveError and the
catalog/solver ones), with the same one-line messages the CLI prints.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costserve.durations import parse_duration
from costserve.errors import BadRequestError, CostserveError, RunStopped
from costserve.log_tail import last_line
from costserve.request import BatchRequest

if TYPE_CHECKING:
    from solver.plan import Plan


def _request(jobs: str | Path | None, deadline: str, plan_only: bool = False, **fields: Any) -> BatchRequest:
    from costserve.config import load_settings

    try:
        deadline_s = parse_duration(deadline)
    except ValueError as exc:
        raise BadRequestError(f"deadline: {exc}") from None
    if (
        jobs is not None and Path(jobs).is_file()
    ):  # the model the file names, as the CLI does (costserve/jobs/file_model.py)
        from costserve.jobs.file_model import run_model

        override = plan_only or bool(fields.get("model_override"))  # plan: `model` wins over the file's, as in the CLI
        fields["model"] = run_model(Path(jobs), fields.get("model"), override).model
    fields["model"] = fields.get("model") or load_settings().default_model
    return BatchRequest(jobs=Path(jobs) if jobs is not None else None, deadline_s=deadline_s, **fields)


def plan(
    jobs: str | Path | None = None,
    *,
    workload: str | Path | None = None,
    model: str | None = None,
    deadline: str = "8h",
    budget: float | None = None,
    quality: float = 0.99,
    spot: bool = False,
    confidence: float = 0.9,
    clouds: list[str] | None = None,
    available: str | None = None,
    baselines: bool = True,
    profiles: str | Path | None = None,
) -> Plan:
    """The cheapest cloud fleet for a job file (or a workload JSON): `costserve plan` without the printing.

    `deadline` is a duration (`8h`, `90m`), `budget` in $; `confidence` the probability the fleet meets both (its
    margin, solver/margin.py); `profiles` a Mélange-format throughput file (the jobs are then bucketed on its grid).
    Returns the Plan (cost $, makespan_s, groups, baselines, outlook: P(meet), slack, quantiles);
    raises a named one-line error (CostserveError, PlanningError, CatalogError) when there is none."""
    from costserve.config import load_settings
    from costserve.planning.batch import plan_request, plan_workload

    if (jobs is None) == (workload is None):
        raise BadRequestError("give a job file or workload= (one of them)")
    request = _request(
        jobs,
        deadline,
        plan_only=True,
        model=model,
        budget=budget,
        quality=quality,
        spot=spot,
        confidence=confidence,
        clouds=tuple(clouds) if clouds else None,
        available=available,
    )
    profile_path = Path(profiles) if profiles is not None else None
    batch, sha256 = plan_workload(
        request,
        Path(workload) if workload is not None else None,
        profile_path,
        load_settings().default_max_tokens,
        lambda _: None,
    )
    return plan_request(request, batch, profile_path, baselines, jobs_sha256=sha256)


def submit(
    jobs: str | Path,
    *,
    model: str | None = None,
    deadline: str = "8h",
    budget: float | None = None,
    quality: float = 0.99,
    broker: str | None = None,
    **options: Any,
) -> Run:
    """Start a driver process that submits the job file (confirmed: no prompt) and return its Run as soon as the run
    exists.

    `options` are submit's other options by their Python names (out, errors_out, resume_from, workers, stages,
    shard_size, replica, backend, spot, confidence, skip_invalid, strict, model_override). The driver gets the typed request
    (run/spawn.py); `broker` travels in its environment ($COSTSERVE_BROKER), never in a file or on a command line.
    Raises CostserveError with the CLI's one-line message when the run could not start (a bad job file, a budget
    the plan exceeds)."""
    from costserve.run.spawn import SubmitOrder, spawn_driver
    from costserve.store.runs import runs_dir

    request = _request(jobs, deadline, model=model, budget=budget, quality=quality, **options)
    log = tempfile.NamedTemporaryFile("w+", prefix="costserve-submit-", suffix=".log", delete=False)
    proc = spawn_driver(SubmitOrder(request=request), runs_dir(), broker, stdout=subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first:
        proc.wait()
        raise CostserveError(_last_line(Path(log.name)) or f"the submit's driver exited with {proc.returncode}")
    return Run(json.loads(first), proc, Path(log.name))


def _last_line(path: Path) -> str:
    return last_line(path, width=2000).removeprefix("costserve: ")


class Run:
    """A submitted run: its id and paths now, its outcome, results and report once it ends."""

    def __init__(self, created: dict[str, Any], proc: subprocess.Popen[str], log: Path) -> None:
        self.id: str = created["run"]
        self.dir = Path(created["run_dir"])
        self.results_path = Path(created["results"])
        self.errors_path = Path(created["errors"])
        self.log = log  # the driver's human output (plan, progress, warnings)
        self._proc = proc
        self._outcome: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Run({self.id!r}, {'running' if self._outcome is None else self._outcome['status']})"

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the driver to end (`timeout` s; subprocess.TimeoutExpired past it) and return its outcome:
        status, exit_code, succeeded, failed, jobs and the paths. Raises RunStopped when it stopped before every job
        had a result (`costserve resume RUN` continues it), CostserveError when it ended without saying how."""
        if self._outcome is None:
            assert self._proc.stdout is not None
            rest, _ = self._proc.communicate(timeout=timeout)
            ended = [json.loads(line) for line in rest.splitlines() if line.strip()]
            if not ended:
                raise CostserveError(
                    f"run {self.id}: the driver exited with {self._proc.returncode} without an outcome: "
                    f"{_last_line(self.log)}"
                )
            self._outcome = ended[-1]
        if self._outcome["status"] != "finished":
            raise RunStopped(self._outcome["message"] or f"run {self.id} stopped")
        return self._outcome

    def results(self) -> list[dict[str, Any]]:
        """The successful result lines (OpenAI Batch output objects) in input order, once the run has ended."""
        self.wait()
        return _read_jsonl(self.results_path)

    def errors(self) -> list[dict[str, Any]]:
        """The failed requests' lines (OpenAI's error file, which exists only when some failed), once the run has ended."""
        self.wait()
        return _read_jsonl(self.errors_path) if self.errors_path.is_file() else []

    def report(self) -> dict[str, Any]:
        """The cost report: totals (cost $, jobs, tokens, makespan s, predicted cost), per-group rows and baselines."""
        from costserve.report.data import build_report
        from costserve.store.runs import RunStore

        return build_report(RunStore(self.dir)).as_json()

    def cancel(self) -> None:
        """Ask the run to stop (finished results are kept); wait() then raises RunStopped."""
        from costserve.run.cancel import cancel_run
        from costserve.store.runs import RunStore

        cancel_run(RunStore(self.dir))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]
