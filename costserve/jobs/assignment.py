"""Jobs to fleet groups: each workload class is split across groups in the plan's class shares, in input order.

The fleet MILP says which fraction of each class each group serves (`class_shares`); this
turns fractions into concrete jobs by largest-remainder rounding, so every job goes to
exactly one group and each group's count is within one job of its planned share.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable

from solver.plan import FleetGroupPlan, Job, Plan
from solver.workload import class_name


def split_counts(total: int, shares: list[float]) -> list[int]:
    """`total` items in proportion to `shares` (summing to ~1): largest remainders get the leftovers."""
    weight = sum(shares) or 1.0
    exact = [total * s / weight for s in shares]
    counts = [math.floor(x) for x in exact]
    for i in sorted(range(len(shares)), key=lambda i: exact[i] - counts[i], reverse=True)[: total - sum(counts)]:
        counts[i] += 1
    return counts


class GroupAssigner:
    """Streams jobs to plan groups: of each class's `counts[class]` jobs, in input order, the first share goes to
    group 0, the next to group 1, ... (largest-remainder counts), so a job file is assigned without holding it."""

    def __init__(self, groups: list[FleetGroupPlan], counts: dict[str, int]) -> None:
        self.groups = groups
        self.bounds: dict[str, list[int]] = {}
        for name, total in counts.items():
            shares = [g.class_shares.get(name, 0.0) for g in groups]
            if not any(
                shares
            ):  # a class the plan never saw (cannot happen for the planned file): the first group takes it
                shares = [1.0] + [0.0] * (len(shares) - 1)
            self.bounds[name] = list(itertools.accumulate(split_counts(total, shares)))
        self.seen: dict[str, int] = defaultdict(int)

    def group_of(self, job: Job) -> int:
        """The index (in `groups`) of the group that serves `job`; call once per job, in input order."""
        name = class_name(job.estimated_input_tokens(), job.max_tokens)
        index = self.seen[name]
        self.seen[name] += 1
        return bisect.bisect_right(self.bounds[name], index)


def class_counts(jobs: Iterable[Job]) -> dict[str, int]:
    """Jobs per workload class."""
    return dict(Counter(class_name(j.estimated_input_tokens(), j.max_tokens) for j in jobs))


def assign_jobs(jobs: list[Job], plan: Plan) -> list[list[Job]]:
    """Jobs per plan group (index = group), following the plan's class shares, each group's in input order."""
    assigner = GroupAssigner(plan.groups, class_counts(jobs))
    out: list[list[Job]] = [[] for _ in plan.groups]
    for job in sorted(jobs, key=lambda j: j.line):
        out[assigner.group_of(job)].append(job)
    return out
