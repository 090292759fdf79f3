"""The files a submit writes are checked before anything runs: never an input, never a directory, never each other;
paths with spaces and non-ASCII letters work everywhere; `validate` and `submit` agree on an empty file; a plan
predicted past its deadline says so."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from costserve.store.runs import list_runs


def _jobs(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    jobs = folder / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"j{i}", "prompt": f"item {i}", "max_tokens": 3}) + "\n" for i in range(n)))
    return jobs


def _refused(cli, args: list[str], *expected: str) -> str:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    result = cli.invoke(app, ["submit", *args, "--yes"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for part in expected:
        assert part in lines[0], lines[0]
    assert list_runs() == []  # refused before a run exists
    return lines[0]


def test_an_output_that_is_the_job_file_is_refused_and_the_file_kept(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    jobs = _jobs(tmp_path)
    before = jobs.read_bytes()
    _refused(cli, [str(jobs), "--out", str(jobs)], "--out", "is the job file", "name another file")
    _refused(cli, [str(jobs), "--errors-out", str(jobs)], "--errors-out", "is the job file")
    link = tmp_path / "link.jsonl"
    os.link(jobs, link)  # another name for the same file
    _refused(cli, [str(jobs), "--out", str(link)], "is the job file")
    assert jobs.read_bytes() == before


def test_outputs_that_are_directories_each_other_or_the_resume_file_are_refused(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    jobs = _jobs(tmp_path)
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text("")
    _refused(cli, [str(jobs), "--out", str(tmp_path)], "--out", "is a directory")
    _refused(cli, [str(jobs), "--errors-out", str(tmp_path)], "--errors-out", "is a directory")
    _refused(cli, [str(jobs), "--out", str(tmp_path / "r.jsonl"), "--errors-out", str(tmp_path / "r.jsonl")],
             "--out and --errors-out both name")
    _refused(cli, [str(jobs), "--resume-from", str(earlier), "--errors-out", str(earlier)],
             "--errors-out", "is the --resume-from file")
    _refused(cli, [str(jobs), "--output-dir", str(jobs)], "--output-dir", "is a file, not a directory")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    _refused(cli, [str(jobs), "--out", str(blocked / "sub" / "r.jsonl")], "--out", "cannot create its directory")


def test_the_api_refuses_an_output_that_is_the_job_file_in_the_same_line(tmp_path: Path) -> None:
    import costserve
    from costserve.errors import CostserveError

    jobs = _jobs(tmp_path)
    with pytest.raises(CostserveError, match="is the job file; the run would replace it"):
        costserve.submit(jobs, out=jobs)
    assert list_runs() == []


def test_validate_and_submit_both_refuse_an_empty_file(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    checked = cli.invoke(app, ["validate", str(empty)])
    assert checked.exit_code == 1 and f"{empty}: no jobs" in checked.output, checked.output
    submitted = cli.invoke(app, ["submit", str(empty), "--yes"])
    assert submitted.exit_code == 2 and f"{empty}: no jobs" in submitted.output, submitted.output


def test_a_plan_predicted_past_the_deadline_says_so_before_it_runs(cli, tmp_path: Path, smollm2_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from costserve.cli import app

    jobs = _jobs(tmp_path)
    result = cli.invoke(app, ["submit", str(jobs), "--model", str(smollm2_dir), "--deadline", "1s"])  # no --yes, no tty
    assert result.exit_code == 2, result.output
    assert "past the --deadline of 1s" in result.output and "pass --yes" in result.output
    assert list_runs() == []


@pytest.mark.slow
def test_a_home_job_file_and_outputs_under_spaces_and_non_ascii_run_a_batch(cli, tmp_path: Path, tiny_llama_dir: Path,  # type: ignore[no-untyped-def]
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from costserve.cli import app

    home = tmp_path / "a b" / "hôme ü"
    monkeypatch.setenv("COSTSERVE_HOME", str(home))
    jobs = _jobs(tmp_path / "job files é", 6)
    out = tmp_path / "out dir ñ" / "rés ults.jsonl"  # its directory does not exist yet: created before the run
    result = cli.invoke(app, ["submit", str(jobs), "--model", str(tiny_llama_dir), "--out", str(out), "--shard-size", "2",
                              "--yes"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == [f"j{i}" for i in range(6)]
    (run,) = list_runs()
    assert run.dir.is_relative_to(home) and (run.dir / "report.html").is_file()
    assert "broker.log" not in result.output  # the embedded broker started (its log in the run, its socket in /tmp)
