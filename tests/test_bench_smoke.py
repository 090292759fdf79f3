"""The bench scripts import and their generators work (they are run by hand, not timed here)."""

from __future__ import annotations

import json
from pathlib import Path

from costserve.jobs.reader import LineError, read_jobs


def test_bench_modules_import_and_generate(tmp_path: Path) -> None:
    from bench import planner, solver, validate_speed

    assert len(planner.MODELS) * len(planner.MIXES) * len(planner.SETTINGS) >= 24
    candidates, workload, availability = solver.synthetic(5, 3, 9)
    assert len(candidates) == 15 and len(workload.classes) == 9 and set(availability) == set(range(5))
    path = tmp_path / "jobs.jsonl"
    validate_speed.make_job_file(path, 2000)
    items = list(read_jobs(path))
    assert len(items) == 2000
    assert sum(isinstance(x, LineError) for x in items) == 2  # one planted bad line per 1000
    assert json.loads(path.read_text().splitlines()[0])
