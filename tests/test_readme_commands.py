"""The README's commands run as written (those that need no cloud account, no daemon and not the 200-job demo).

Each command below is checked to appear in README.md verbatim, then run through the CLI in a scratch directory holding
the repository's `examples/` and a `jobs.jsonl` (a copy of the example), with HOME there too (`~` as the shell would
expand it). Left out, with why: `make demo` and `make test` (the demo is CI's own job; the suite is this), the sky
launches (a cloud account), `costserve scheduler` and `worker` (daemons), `submit` of the 200-job example (the demo),
`calibrate`/`profile` (minutes of measurement; tests/test_calibration.py runs them), `catalog refresh` (an account or
SkyPilot's catalog files), and commands with placeholders (RUN, w.json, replica.json).
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLES, REPO
from costserve.cli import app

README_COMMANDS = [
    "costserve plan examples/jobs.jsonl --model Llama-3.1-70B --deadline 8h --budget 40 --quality 0.99 --spot --out plan.json",
    "costserve plan --melange examples/melange-example.json --json",
    "costserve catalog offerings --gpu L4 --available L4=8,H100=2",
    "costserve catalog export --skypilot ~/.sky/catalogs/v8",
    "costserve submit examples/jobs.jsonl --backend sky --dry-run --model Llama-3.1-8B --model-override --deadline 3h --spot",
    'costserve schedule add nightly jobs.jsonl --cron "0 2 * * *" --budget 40 --deadline 6h',
    "costserve schedule list",
    "costserve schedule remove nightly",
    "costserve runs",
    "costserve report --since 30d --html trend.html",
]


@pytest.mark.slow
def test_the_readme_commands_run_as_written(cli, tmp_path: Path, costserve_home: Path, smollm2_dir: Path,  # type: ignore[no-untyped-def]
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (REPO / "README.md").read_text()
    for command in README_COMMANDS:
        assert command in readme, f"no longer in README.md: {command}"
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    shutil.copy(EXAMPLES / "jobs.jsonl", tmp_path / "jobs.jsonl")
    (costserve_home / "models").mkdir(parents=True)
    (costserve_home / "models" / "SmolLM2-135M").symlink_to(smollm2_dir)  # as a home has it once converted
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for command in README_COMMANDS:
        args = [a.replace("~", str(tmp_path), 1) if a.startswith("~") else a for a in shlex.split(command)[1:]]
        result = cli.invoke(app, args)
        assert result.exit_code == 0, f"{command}\n{result.output}"
        assert "Traceback" not in result.output, command
    assert (tmp_path / "plan.json").is_file()
    assert any((tmp_path / ".sky" / "catalogs" / "v8").rglob("vms.csv"))
