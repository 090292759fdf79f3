"""A full disk under a running batch, for real: COSTSERVE_HOME on a small tmpfs that the test fills mid-run.

The run must end by itself with one line saying what happened and how to continue (no
traceback); once space is freed, `costserve resume` finishes it with every custom_id exactly
once. Mounting needs root; elsewhere the test is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from run_helpers import check_results, start_submit

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")]


@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A 16 MiB tmpfs mounted at a short path (the broker's socket lives there too); unmounted afterwards."""
    mnt = Path(tempfile.mkdtemp(prefix="cs-full-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mnt)]).returncode != 0:
        mnt.rmdir()
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])
    shutil.rmtree(mnt, ignore_errors=True)


def _fill(path: Path) -> None:
    """Write zeros to `path` until the filesystem refuses (ENOSPC)."""
    block = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def test_a_full_disk_stops_the_run_in_one_line_and_resume_finishes_it(cli, tmp_path: Path, tiny_llama_dir: Path,  # type: ignore[no-untyped-def]
                                                                      small_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from costserve.cli import app

    monkeypatch.setenv("COSTSERVE_HOME", str(small_fs / "home"))
    monkeypatch.setenv("COSTSERVE_FULL_GIVE_UP_S", "10")
    run = start_submit(tmp_path, tiny_llama_dir, 4)  # its results file is on another filesystem: still written
    store, out, ids = run.store, run.out, run.ids
    filler = small_fs / "filler"
    _fill(filler)
    output = run.finish()
    assert run.driver.returncode == 2 and "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    assert "disk full" in last and f"costserve resume {store.id}" in last, output
    kept = len(out.read_text().splitlines())
    assert 4 <= kept < len(ids)
    filler.unlink()
    result = cli.invoke(app, ["resume", store.id])
    assert result.exit_code == 0, result.output
    check_results(out, ids)
