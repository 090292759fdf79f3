"""Jobs to fleet groups: each workload class is split across groups in the plan's class shares, in input order.

The fleet MILP says which fraction of each class each group serves (`class_shares`); this
turns fractions into concrete jobs by largest-remainder rounding, so every job goes to
exactly one group and each group's count is within one job of its planned share.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from solver.plan import Plan
from solver.workload import class_name


def split_counts(total: int, shares: list[float]) -> list[int]:
    """`total` items in proportion to `shares` (summing to ~1): largest remainders get the leftovers."""
    weight = sum(shares) or 1.0
    exact = [total * s / weight for s in shares]
    counts = [math.floor(x) for x in exact]
    for i in sorted(range(len(shares)), key=lambda i: exact[i] - counts[i], reverse=True)[: total - sum(counts)]:
        counts[i] += 1
    return counts


def assign_jobs(jobs: list[Any], plan: Plan) -> list[list[Any]]:
    """Jobs per plan group (index = group), following the plan's class shares; duck-typed jobs as workload_from_jobs takes."""
    by_class: dict[str, list[Any]] = defaultdict(list)
    for job in jobs:
        by_class[class_name(job.estimated_input_tokens(), job.max_tokens)].append(job)
    out: list[list[Any]] = [[] for _ in plan.groups]
    for name, members in by_class.items():
        shares = [g.class_shares.get(name, 0.0) for g in plan.groups]
        if not any(shares):  # a class the plan never saw (cannot happen for the planned file): the first group takes it
            shares = [1.0] + [0.0] * (len(shares) - 1)
        start = 0
        for group, n in enumerate(split_counts(len(members), shares)):
            out[group].extend(members[start : start + n])
            start += n
    for group_jobs in out:
        group_jobs.sort(key=lambda j: j.line)
    return out
