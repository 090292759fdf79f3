"""A run whose databases another process holds locked for 90 s (longer than SQLite's busy timeouts) still ends by itself.

The lock is real: a separate process holds `BEGIN EXCLUSIVE` on run.sqlite and results.sqlite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import check_results, start_submit

pytestmark = pytest.mark.slow
LOCK_S = 90

HOLD_LOCKS = """
import sqlite3, sys, time
cons = [sqlite3.connect(p, isolation_level=None) for p in sys.argv[2:]]
for con in cons:
    con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[1]))
for con in cons:
    con.execute("ROLLBACK")
"""


def test_a_run_outwaits_databases_locked_for_90_s(tmp_path: Path, tiny_llama_dir: Path) -> None:
    run = start_submit(tmp_path, tiny_llama_dir, 4)
    store = run.store
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCKS, str(LOCK_S), str(store.dir / "run.sqlite"),
                               str(store.dir / "results.sqlite")], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
    try:
        output = run.finish()
    finally:
        if holder.poll() is None:
            holder.kill()
    assert run.driver.returncode == 0, output
    assert holder.wait() == 0  # the lock was held for its whole 90 s, not broken
    check_results(run.out, run.ids)
    assert "run.sqlite is locked by another process; waiting" in output
    failed = store.events("shard failed")
    assert any("database is locked" in f and "; retrying" in f for f in failed), failed  # a worker's write gave up, then retried
