"""What a baseline says beside costserve's plan: how its fleet differs (GPU type, precision, mix) or that it is the same
fleet, and for a baseline with no fleet, the cheapest point where it gets one and the knob (`--budget`, `--deadline`)
that reaches it — or that no deadline or budget does.

A longer deadline lowers a fleet's cost only while start-up or whole instances dominate; past that the cost of the
work is the same at any deadline. So an over-budget problem is told to raise `--deadline` only when the cheapest
fleet at any deadline (ANY_DEADLINE_S) fits the budget.
"""

from __future__ import annotations

from costserve.durations import format_duration, format_money
from solver.fleet import FleetProblem, FleetSolution, Infeasible, fastest_within_budget, solve_fleet
from solver.plan import BaselinePlan, FleetGroupPlan, precision_text

ANY_DEADLINE_S = 30 * 24 * 3600.0  # s: the longest deadline tried ("at any deadline"), fastest_within_budget's too


def fleet_difference(ours: list[FleetGroupPlan], theirs: list[FleetGroupPlan]) -> str:
    """How the fleet `theirs` differs from costserve's `ours`, in the order a reader checks: GPU types (one type vs a
    mix), precision, then the instances rented; `same fleet` when they rent the same instances at the same bits."""
    if _rents(ours) == _rents(theirs) and precision_text(ours) == precision_text(theirs):
        return "same fleet"
    parts = []
    our_gpus, their_gpus = _gpus(ours), _gpus(theirs)
    if our_gpus != their_gpus:
        kind = "one GPU type" if len(their_gpus) == 1 else "a mix"
        parts.append(f"{kind}: {'+'.join(their_gpus)} instead of {'+'.join(our_gpus)}")
    if precision_text(ours) != precision_text(theirs):
        parts.append(f"precision: {precision_text(theirs)} instead of {precision_text(ours)}")
    if not parts:  # the same GPUs at the same bits, rented otherwise (instance type, count, region, spot)
        parts.append("the same GPUs and precision in other instances or regions")
    return "; ".join(parts)


def fleet_text(groups: list[FleetGroupPlan]) -> tuple[str, str]:
    """(what a fleet rents, the bits its replicas run), for a baseline's row: `2x g6.xlarge (1x L4) aws/us-east-1`,
    `16-bit` or `mixed 8/4-bit`."""
    rents = "; ".join(
        f"{g.count}x {g.instance_type} ({g.gpus_per_instance}x {g.gpu}) {g.cloud}/{g.region}"
        + (" spot" if g.spot else "")
        for g in groups
    )
    return rents, precision_text(groups)


def _rents(groups: list[FleetGroupPlan]) -> list[tuple[object, ...]]:
    return sorted((g.cloud, g.region, g.instance_type, g.spot, g.count) for g in groups)


def _gpus(groups: list[FleetGroupPlan]) -> list[str]:
    return sorted({g.gpu for g in groups})


def nearest_feasible(problem: FleetProblem, one_gpu_type: bool = False) -> str:
    """For a problem with no fleet: the cheapest fleet it gets and the knob that gets it, in one clause (`feasible
    from $67.20 with --budget 67.20`, `feasible at --deadline 5h10m ($41.00)`), or `no deadline or budget makes it
    feasible` (availability or the quality target rules it out)."""
    if problem.budget is not None:
        try:
            at_deadline = solve_fleet(problem.with_(budget=None), one_gpu_type=one_gpu_type)
            return f"feasible from {format_money(at_deadline.cost)} with --budget {_dollars(at_deadline.cost)}"
        except Infeasible:
            pass  # the deadline alone rules it out: a longer one, below
    try:
        anytime = solve_fleet(problem.with_(budget=None, deadline_s=ANY_DEADLINE_S), one_gpu_type=one_gpu_type)
    except Infeasible:
        return "no deadline or budget makes it feasible"
    deadline = f"--deadline {format_duration(anytime.makespan_seconds, whole=False)}"
    if problem.budget is not None and anytime.cost > problem.budget:
        return f"feasible at {deadline} --budget {_dollars(anytime.cost)} ({format_money(anytime.cost)})"
    return f"feasible at {deadline} ({format_money(anytime.cost)})"


def budget_advice(problem: FleetProblem, cheapest: FleetSolution) -> str:
    """The knob for a problem whose deadline has a fleet but not within its budget: raise `--budget` to the cheapest
    fleet's cost, or lengthen `--deadline` to the fastest fleet within the budget — only when one exists (at any
    deadline the work costs about the same, so often none does)."""
    assert problem.budget is not None
    raise_budget = f"raise --budget to {_dollars(cheapest.cost)}"
    try:
        fastest = fastest_within_budget(problem, longest_s=ANY_DEADLINE_S)
    except Infeasible:
        anytime = solve_fleet(problem.with_(budget=None, deadline_s=ANY_DEADLINE_S))
        return (
            f"{raise_budget} (no deadline helps: the cheapest fleet at any deadline costs {format_money(anytime.cost)})"
        )
    return (
        f"{raise_budget}, or --deadline to {format_duration(fastest.makespan_seconds)} (the fastest fleet within "
        f"{format_money(problem.budget)})"
    )


def _dollars(cost: float) -> str:
    """A --budget value that covers `cost` ($): rounded up to the cent."""
    cents = int(-(-cost * 100 // 1))
    return f"{cents / 100:.2f}"


def same_as_earlier(baselines: list[BaselinePlan], plan_cost: float, plan_makespan_s: float) -> list[BaselinePlan]:
    """The baselines with one figure per fleet: one that is costserve's fleet shows costserve's cost and makespan, one
    that rents the same as an earlier baseline shows that one's (and says so), so a table never lists one fleet at
    two makespans."""
    out: list[BaselinePlan] = []
    for b in baselines:
        if b.differs == "same fleet":
            b = b.model_copy(update={"cost": plan_cost, "makespan_s": plan_makespan_s, "savings": 1.0})
        else:
            earlier = next(
                (e for e in out if e.cost is not None and (e.fleet, e.precision) == (b.fleet, b.precision)), None
            )
            if earlier is not None and b.cost is not None:
                b = b.model_copy(
                    update={
                        "cost": earlier.cost,
                        "makespan_s": earlier.makespan_s,
                        "savings": earlier.savings,
                        "differs": f"same fleet as {earlier.name}",
                    }
                )
        out.append(b)
    return out
