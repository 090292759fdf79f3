"""Baselines that explain (issue: the CLI a platform engineer trusts on first use, item 5): per baseline what differs
from costserve's fleet or `same fleet`, and for one with no fleet the cheapest point where it gets one and the knob
that reaches it — checked by turning that knob."""

from __future__ import annotations

import json
import re

from conftest import EXAMPLES

from costserve.cli import app

JOBS = str(EXAMPLES / "jobs.jsonl")
LLAMA_8B = ["--model", "Llama-3.1-8B", "--deadline", "2h", "--spot"]


def _plan(cli, *args: str) -> dict:  # type: ignore[no-untyped-def]
    result = cli.invoke(app, ["plan", JOBS, *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_each_baseline_says_how_it_differs_or_that_it_is_the_same_fleet(cli) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(cli, *LLAMA_8B)
    gpus = sorted({g["gpu"] for g in plan["groups"]})
    for b in plan["baselines"]:
        assert b["differs"], b
        if b["differs"] == "same fleet":  # costserve's own fleet: its figures, and nothing saved
            assert (b["cost"], b["makespan_s"], b["savings"]) == (plan["cost"], plan["makespan_s"], 1.0)
        elif b["differs"].startswith("same fleet as "):  # one fleet, one set of figures
            earlier = next(e for e in plan["baselines"] if e["name"] == b["differs"].removeprefix("same fleet as "))
            assert (b["cost"], b["makespan_s"], b["fleet"]) == (earlier["cost"], earlier["makespan_s"], earlier["fleet"])
        else:
            assert b["savings"] > 1 and ("instead of " + "+".join(gpus) in b["differs"] or "precision: " in b["differs"])
    shown = " ".join(cli.invoke(app, ["plan", JOBS, *LLAMA_8B]).output.split())
    assert "same fleet" in shown and "1.00x" not in shown and "1.00×" not in shown  # no "saves 1.00x"


def test_an_infeasible_baseline_names_the_knob_and_that_knob_makes_it_feasible(cli) -> None:  # type: ignore[no-untyped-def]
    cheapest = _plan(cli, *LLAMA_8B)["outlook"]["cost_quantile"]  # what the budget must hold: the cost at 90%
    tight = f"{cheapest * 1.2:.4f}"  # costserve's fleet fits; a 16-bit one does not
    plan = _plan(cli, *LLAMA_8B, "--budget", tight)
    (sixteen,) = [b for b in plan["baselines"] if b["name"] == "single-type-16bit"]
    assert sixteen["cost"] is None and sixteen["fleet"] == ""
    knob = re.fullmatch(r"infeasible; feasible from \$[\d.,]+ with --budget ([\d.]+)", sixteen["note"])
    assert knob, sixteen["note"]
    raised = _plan(cli, *LLAMA_8B, "--budget", knob.group(1))  # the knob it names...
    (now,) = [b for b in raised["baselines"] if b["name"] == "single-type-16bit"]
    assert now["cost"] is not None and now["cost"] <= float(knob.group(1))  # ...gets it a fleet
    shown = cli.invoke(app, ["plan", JOBS, *LLAMA_8B, "--budget", tight]).output
    assert " ".join(shown.split()).count("infeasible") == sum(b["cost"] is None for b in plan["baselines"])  # said once each


def test_an_over_budget_plan_suggests_a_longer_deadline_only_when_one_helps(cli) -> None:  # type: ignore[no-untyped-def]
    seventy = ["--model", "Llama-3.1-70B", "--confidence", "0.6"]  # a margin a 12-minute deadline can hold
    short = _plan(cli, *seventy, "--deadline", "12m")["cost"]  # start-up dominates: many replicas at once
    relaxed = _plan(cli, *seventy, "--deadline", "8h")["cost"]
    assert relaxed < short
    between = cli.invoke(app, ["plan", JOBS, *seventy, "--deadline", "12m", "--budget", f"{(short + relaxed) / 2:.4f}"])
    line = " ".join(between.output.split())
    assert between.exit_code == 1 and "or --deadline to " in line  # a longer deadline fits this budget
    below = cli.invoke(app, ["plan", JOBS, *seventy, "--deadline", "12m", "--budget", f"{relaxed * 0.8:.4f}"])
    line = " ".join(below.output.split())
    assert below.exit_code == 1 and "--deadline" not in line.split("costserve: ")[1]  # no deadline helps: not offered
    assert "no deadline helps: the cheapest fleet at any deadline costs" in line
