"""A finished run calibrates the next plans: each fleet group's measured start-up, work factor and output share go into
the calibration store (costserve/store/calibration.py).

A group's start-up runs from when it was launched (a local run: when its shards were queued) to its first shard
starting, plus what that shard took beyond the group's later shards (the model load; report/data.startup_seconds).
Its work factor is the time it then worked ÷ the time the plan modelled for that work (its finish less its start-up,
before any earlier calibration), the model evaluated at the output tokens the jobs really wrote: a plan that expected
max_tokens and got half of them modelled too much work, and the factor must not learn that as speed. Its output share is the tokens it wrote ÷ the tokens its jobs' max_tokens allowed.
Local groups are kept under this machine's signature, cloud groups under their hardware (solver.plan.hardware_signature).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from costserve.notices import warn
from costserve.report.data import startup_seconds
from costserve.store.run_state import Event
from costserve.store.runs import RunStore

if TYPE_CHECKING:
    import pandas as pd

    from costserve.report.data import RunReport
    from solver.plan import FleetGroupPlan, Plan


@dataclass(frozen=True)
class GroupMeasurement:
    """What one fleet group of a finished run measured."""

    key: str  # the calibration row's id: the run, and the group's queue for cloud groups
    hardware: str
    replica: str
    startup_s: float
    work_factor: float
    output_share: float | None


def calibrate_from(store: RunStore, report: RunReport) -> None:
    """Record every group of a run that finished all its jobs; best effort (a full disk or a locked store is said)."""
    from costserve.store.calibration import record_run

    plan = store.plan()
    if plan is None or report.results != report.jobs or not len(report.groups):
        return
    for m in group_measurements(store, plan, report):
        try:
            record_run(
                m.key, m.hardware, plan.model, m.replica, m.startup_s, m.work_factor, output_share=m.output_share
            )
        except (OSError, sqlite3.Error) as exc:  # this run just does not calibrate
            warn(f"run {store.id}: not kept for calibration ({exc})")
            return


def group_measurements(store: RunStore, plan: Plan, report: RunReport) -> list[GroupMeasurement]:
    """The start-up (s), work factor and output share of each group of `plan` that ran jobs."""
    from costserve.store.results import result_frames, results_db

    con = results_db(store.dir)
    try:
        _, runs = result_frames(con)
    finally:
        con.close()
    runs["group queue"] = runs["shard"].map(
        {s.shard_id: s.group for s in store.shards()}
    )  # a worker's own queue may differ
    queued = store.first_event_time(Event.QUEUED) or store.created()
    out = []
    for _, row in report.groups.iterrows():
        index, queue = int(row["group"]), str(row["queue"])
        if not 0 <= index < len(plan.groups):
            continue  # the broker node
        group = plan.groups[index]
        local = _is_local(group)
        launched = queued if local else store.event_time(Event.LAUNCHING, queue)
        # what the jobs' max_tokens allowed: the tokens the plan costed for the group ÷ the plan's output share
        allowed = float(row["planned output tokens"] or 0.0) / plan.output_share
        tokens = float(row["output tokens"])
        share = tokens / allowed if allowed > 0 and tokens > 0 else None
        scale = _work_scale(plan, group, share, local)
        measured = _measure(runs[runs["group queue"] == queue], launched, group, scale)
        if measured is not None:
            out.append(
                GroupMeasurement(
                    key=store.id if local else f"{store.id}/{queue}",
                    hardware=_hardware(group),
                    replica=group.replica.summary(),
                    startup_s=measured[0],
                    work_factor=measured[1],
                    output_share=share,
                )
            )
    return out


def _measure(
    runs: pd.DataFrame, launched: float | None, group: FleetGroupPlan, scale: float
) -> tuple[float, float] | None:
    """(start-up s, work factor) of one group's shard runs, or None when it ran none or its launch time is unknown.
    `scale`: the modelled work at the output the jobs wrote ÷ the modelled work the plan counted (_work_scale)."""
    if launched is None or not len(runs):
        return None
    startup_s = startup_seconds(runs, launched) or 0.0
    work_s = float(runs["finished"].max()) - launched - startup_s
    modelled_work_s = (group.finish_s - group.startup_s) / group.work_factor * scale  # the roofline's or profile's own
    return (startup_s, work_s / modelled_work_s) if modelled_work_s > 0 and work_s > 0 else None


def _work_scale(plan: Plan, group: FleetGroupPlan, share: float | None, local: bool) -> float:
    """The work the plan's model gives the output the jobs really wrote ÷ the work it gave the output it expected.

    For this machine the model is evaluated again at both (prompts cost the same, output steps scale); a cloud group
    takes its work as proportional to output tokens, which overstates the change by the prefill's share."""
    if share is None or share == plan.output_share:
        return 1.0
    written = share / plan.output_share
    if not local:
        return written
    from catalog.load import load_gpus, load_models
    from costserve.planning.batch import cpu_profile_for
    from solver.local_plan import modelled_local_work_s
    from solver.workload import Workload, WorkloadClass

    models = load_models().set_index("model", drop=False)
    if plan.model not in models.index:
        return written  # a model from its config.json only: no catalog row to evaluate it again

    def workload(scale: float) -> Workload:
        return Workload(
            tuple(
                WorkloadClass(
                    k.name,
                    k.count,
                    round(k.input_tokens * k.count),
                    max(k.count, round(k.output_tokens * k.count * scale)),
                )
                for k in plan.workload
            )
        )

    gpus, (profile, _) = load_gpus(), cpu_profile_for(plan.model)
    expected = modelled_local_work_s(models.loc[plan.model], gpus, group.replica.bits, workload(1.0), profile)
    wrote = modelled_local_work_s(models.loc[plan.model], gpus, group.replica.bits, workload(written), profile)
    return wrote / expected if expected > 0 else written


def _is_local(group: FleetGroupPlan) -> bool:
    from solver.plan import LOCAL_CLOUD

    return group.cloud == LOCAL_CLOUD


def _hardware(group: FleetGroupPlan) -> str:
    """This machine's signature for a local group, the cloud hardware's for the others."""
    from solver.local_plan import machine_signature
    from solver.plan import hardware_signature

    return (
        machine_signature()
        if _is_local(group)
        else hardware_signature(group.gpu, group.gpus_per_instance, group.instance_type)
    )
