"""A simulated fleet on a virtual clock, driven by costserve's own control code (bench.deadline runs it).

What is simulated: each group's true rate (its prediction × a drawn speed, one draw per prediction source, as
solver/outlook.py assumes), each launch's start-up, spot capacity from traces (bench/spot_traces.py), billing per
second. What is real: the plans and every re-plan (solver/margin.solve_at_confidence over the run's candidate set —
the fleet MILP alone is re-solved), the steering's verdict (solver/steering.py), the budget guard
(costserve/run/budget.BudgetGuard, on the simulated ledger), and the driver's rules around them — a lost or refused
group's jobs re-planned within the deadline and budget left without what failed, the jobs of every group lost in one
step in one re-plan (run/replan.py), late jobs moved to added capacity within the budget left once the running fleet is
paid to the deadline (run/replan.GroupReplacer.add), idle groups taking waiting jobs from the group that would finish
last, up or still starting (run/shard_window.rebalance). No sleeps: a step is DT_S of virtual time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from solver.candidates import Candidate
from solver.fleet import FleetProblem, Infeasible
from solver.margin import solve_at_confidence
from solver.steering import MEASURED_MIN_JOBS, Pace, budget_for_added, verdict
from solver.uncertainty import MEASURED_LOG_SPREAD, STARTUP_LOG_SPREAD, z_of
from solver.workload import Workload, WorkloadClass

DT_S = 60.0  # one step of the virtual clock (s): the driver's steering interval
HORIZON = 3.0  # a run still going at this many deadlines is stopped (it has long missed)


@dataclass(frozen=True)
class Policy:
    """How a run is planned and driven: plan `confidence` (None: on the deadline), `steer` to the deadline, switch spot
    work to on-demand when behind the uniform-progress line (`uniform_progress`), one GPU type only (`one_type`)."""

    name: str
    confidence: float | None
    steer: bool = False
    uniform_progress: bool = False
    one_type: bool = False


@dataclass
class Group:
    """Instances of one candidate running their share of the jobs (per class)."""

    c: Candidate
    count: int
    left: np.ndarray
    launched: float
    up_at: float
    speed: float  # true ÷ predicted rate
    done: float = 0.0
    down: float | None = None

    def instance_s(self, jobs: np.ndarray | None = None) -> float:
        """True instance-seconds `jobs` (per class; default: its own jobs left) need on it."""
        jobs = self.left if jobs is None else jobs
        return float(sum(n / (r * self.speed) for n, r in zip(jobs, self.c.requests_per_s) if n > 0 and r > 0))

    def jobs_per_s(self, mix: np.ndarray | None = None) -> float:
        """True jobs/s of all its instances at the class mix of `mix` (default: its own jobs left)."""
        jobs = self.left if mix is None else mix
        need = self.instance_s(jobs)
        return float(jobs.sum()) * self.count / need if need > 0 else 0.0


@dataclass
class Outcome:
    met: bool
    cost: float
    finish_s: float | None
    overrun: bool
    stated_p_meet: float
    steered: int = 0  # capacity added by the steering
    warned_miss_at: float | None = None  # when the steering said the deadline would be missed (s)


@dataclass
class Sim:
    """One run of one policy: `plan_problem` is the scenario's fleet problem (candidate set, workload, deadline, budget),
    `speed` the true speed per prediction source, `traces` per spot offering with their offset into the trace (s)."""

    policy: Policy
    plan_problem: FleetProblem
    speed: dict[str, float]
    traces: dict[int, tuple[object, float]]
    rng: np.random.Generator
    t: float = 0.0
    groups: list[Group] = field(default_factory=list)
    ruled_out: set[int] = field(default_factory=set)
    billed: float = 0.0  # $ of groups already down
    one_gpu: str | None = None
    line_from: float = 0.0  # when the uniform-progress line leaves 0 (s): the first plan's start-up
    worked_until: float = 0.0  # when (s) the last job done in the latest step finished: a run ends then, not at DT_S
    steered: int = 0
    warned_at: float | None = None
    stopped: str | None = None  # why the run stopped before its jobs were done (the driver's NoCapacity)

    # the ledger the real BudgetGuard reads
    def spend(self, now: float | None = None) -> float:
        return self.billed + sum(g.c.price_per_hour * g.count * (self.t - g.launched) / 3600 for g in self.live())

    def running_price_per_hour(self) -> float:
        return sum(g.c.price_per_hour * g.count for g in self.live())

    def live(self) -> list[Group]:
        return [g for g in self.groups if g.down is None]

    def stop(self, g: Group) -> None:
        self.billed += g.c.price_per_hour * g.count * (self.t - g.launched) / 3600
        g.down = self.t

    def capacity(self, offering: int) -> int:
        """Instances of a spot offering that can be held now (its trace), less what the run holds; one without a trace
        has whatever the catalog says (the MILP's availability already bounds it)."""
        if offering not in self.traces:
            return 1 << 30
        trace, offset = self.traces[offering]
        held = sum(g.count for g in self.live() if g.c.offering == offering and g.c.spot)
        return trace.at(self.t, offset) - held  # type: ignore[attr-defined]

    def launch(self, c: Candidate, count: int, jobs: np.ndarray, confidence: float | None) -> None:
        """Launch `count` instances of `c` for `jobs`; a spot launch the trace cannot hold is refused: the offering is
        ruled out for the run and the jobs re-planned (run/launch_failure.py)."""
        if c.spot and self.capacity(c.offering) < count:
            self.ruled_out.add(c.offering)
            if not self.replan(jobs, confidence):
                self._to_survivors(jobs)
            return
        startup = c.startup_seconds * math.exp(STARTUP_LOG_SPREAD * self.rng.standard_normal())
        self.groups.append(Group(c, count, jobs.astype(float), self.t, self.t + startup, self.speed[c.rate_source]))

    def replan(self, jobs: np.ndarray, confidence: float | None, budget: float | None = None,
               measured: dict[str, float] | None = None, spot: bool = True) -> bool:
        """Re-plan `jobs` (per class) with the fleet MILP on what is left of the deadline and budget and launch the
        fleet; False (nothing launched) when none fits."""
        p = self.plan_problem
        remaining = p.deadline_s - self.t
        if budget is None and p.budget is not None:
            budget = p.budget - self.spend()
        if jobs.sum() < 1 or remaining <= 0 or (budget is not None and budget <= 0):
            return jobs.sum() < 1
        held: dict[int, int] = {}
        for g in self.live():
            held[g.c.offering] = held.get(g.c.offering, 0) + g.count
        candidates = [self._as_measured(c, measured or {}) for c in p.candidates
                      if c.offering not in self.ruled_out and (spot or not c.spot)
                      and (self.one_gpu is None or c.gpu == self.one_gpu)]
        problem = p.with_(candidates=candidates, workload=scaled(p.workload, jobs), deadline_s=remaining,
                          availability={o: max(0, a - held.get(o, 0)) for o, a in p.availability.items()}, budget=budget)
        try:
            solution, _, _ = solve_at_confidence(problem, confidence)
        except Infeasible:
            return False
        for g in solution.groups:
            share = jobs * np.array(g.shares)
            if share.sum() >= 1:  # not a group the MILP planned for `scaled`'s stand-in job of an empty class
                self.launch(g.candidate, g.count, share, confidence)
        return True

    def _to_survivors(self, jobs: np.ndarray) -> None:
        """No replacement fits: the groups still running take the jobs (run/replan.py); with none, the run stops."""
        live = [g for g in self.live() if all(r > 0 for r in g.c.requests_per_s)]
        if not live:
            self.stopped = "no capacity"
            return
        for g in live:
            g.left = g.left + jobs / len(live)

    def _as_measured(self, c: Candidate, measured: dict[str, float]) -> Candidate:
        """A candidate whose prediction source a running group has measured: at the measured speed, measured spread."""
        if c.rate_source not in measured:
            return c
        factor = measured[c.rate_source]
        return replace(c, requests_per_s=tuple(r * factor for r in c.requests_per_s), rate_spread=MEASURED_LOG_SPREAD)

    def step(self) -> None:
        """One DT_S: spot capacity taken away (a group losing instances is lost whole; the lost groups' jobs are
        re-planned together), work done, idle groups take waiting jobs from the one that would finish last."""
        lost = []
        for g in self.live():
            if g.c.spot and self.capacity(g.c.offering) < 0:
                self.stop(g)
                lost.append(g)
        if lost:  # one re-plan for every group lost at this check, as the driver's GroupReplacer.check
            jobs = np.sum([g.left for g in lost], axis=0)
            if not self.replan(jobs, self.policy.confidence, spot=self._spot_ok()):
                self._to_survivors(jobs)
        self.worked_until = self.t
        for g in self.live():
            if g.up_at <= self.t + DT_S and g.left.sum() > 0:
                start = max(self.t, g.up_at)
                work = g.count * (self.t + DT_S - start)
                need = g.instance_s()
                share = min(1.0, work / need) if need > 0 else 1.0
                g.done += float(g.left.sum()) * share
                g.left = g.left * (1 - share) if share < 1 else np.zeros_like(g.left)
                self.worked_until = max(self.worked_until, start + need / g.count if share >= 1 else self.t + DT_S)
        self._rebalance()
        self.t += DT_S

    def _rebalance(self) -> None:
        idle = [g for g in self.live() if g.left.sum() < 1 and g.up_at <= self.t]
        for g in idle:
            busy = [v for v in self.live() if v.left.sum() >= 1 and v is not g
                    and all(r > 0 for r, n in zip(g.c.requests_per_s, v.left) if n > 0)]
            if not busy:
                return
            v = max(busy, key=lambda v: self._finish(v))
            # the share of v's jobs with which both finish together, v's start-up still to come counted (the real
            # window takes waiting shards whether or not their group is up yet)
            mine_rate, theirs_rate = g.jobs_per_s(v.left), v.jobs_per_s()
            lead = theirs_rate * max(0.0, v.up_at - self.t)
            total = float(v.left.sum())  # ≥ 1: v is busy
            if mine_rate + theirs_rate <= 0:
                continue
            mine = min(1.0, (total + lead) * mine_rate / (mine_rate + theirs_rate) / total)
            g.left, v.left = v.left * mine, v.left * (1 - mine)

    def _finish(self, g: Group) -> float:
        """When (s) `g` finishes its queue at its true rate, start-up included."""
        if g.left.sum() <= 0:
            return self.t
        rate = g.jobs_per_s()
        return max(g.up_at, self.t) + (float(g.left.sum()) / rate if rate > 0 else math.inf)

    def _spot_ok(self) -> bool:
        """Whether spot may be used: always, but under Uniform Progress only while progress is on or ahead of the line
        from 0 once the first plan's groups are up (`line_from`, s) to 1 at the deadline."""
        if not self.policy.uniform_progress:
            return True
        line = (self.t - self.line_from) / (self.plan_problem.deadline_s - self.line_from)
        return self.progress() >= line

    def progress(self) -> float:
        total = float(sum(k.count for k in self.plan_problem.workload.classes))
        return 1 - sum(float(g.left.sum()) for g in self.live()) / total

    def steer(self) -> None:
        """The driver's steering: late jobs at the measured paces move to added capacity within the budget left once
        the running fleet is paid to the deadline, else the miss is said once."""
        z = z_of(self.policy.confidence or 0.5)
        live, paces, measured = self.live(), [], {}
        for i, g in enumerate(live):
            noise = math.exp(MEASURED_LOG_SPREAD * self.rng.standard_normal())
            measuring = g.done >= MEASURED_MIN_JOBS
            paces.append(Pace(str(i), float(g.left.sum()), g.jobs_per_s() * noise if measuring else None))
            if measuring:
                measured[g.c.rate_source] = g.speed * noise
        found = verdict(paces, self.t, self.plan_problem.deadline_s, z)
        if not found.late_jobs:
            return
        before = [(g, g.left.copy()) for g in live]
        jobs = np.zeros(len(self.plan_problem.workload.classes))
        for name, n in found.late_jobs.items():
            g = live[int(name)]
            share = min(1.0, n / max(float(g.left.sum()), 1e-9))
            jobs, g.left = jobs + g.left * share, g.left * (1 - share)
        remaining = self.plan_problem.deadline_s - self.t
        budget = budget_for_added(self.plan_problem.budget, self.spend(), self.running_price_per_hour(), remaining)
        if (budget is None or budget > 0) and self.replan(jobs, self.policy.confidence, budget=budget, measured=measured):
            self.steered += 1
            return
        for g, left in before:
            g.left = left
        if self.warned_at is None:
            self.warned_at = self.t

    def uniform_progress(self) -> None:
        """Can't Be Late's Uniform Progress: behind the line from 0 to the deadline, spot work moves to on-demand."""
        if self._spot_ok():
            return
        for g in [g for g in self.live() if g.c.spot and g.left.sum() >= 1]:
            self.stop(g)
            if not self.replan(g.left, self.policy.confidence, spot=False):
                self._to_survivors(g.left)


def scaled(workload: Workload, jobs: np.ndarray) -> Workload:
    """The workload's classes with `jobs` requests each (at least one, so every class keeps its mean lengths and the
    candidates' per-class rates stay aligned)."""
    classes = []
    for k, n in zip(workload.classes, jobs):
        count = max(1, math.ceil(n))
        classes.append(WorkloadClass(k.name, count, round(k.input_tokens * count), round(k.output_tokens * count)))
    return Workload(tuple(classes), workload.longest_job_tokens)
