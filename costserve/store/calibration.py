"""Every run calibrates the next: what each finished run measured, kept in `$COSTSERVE_HOME/calibration.sqlite`.

A row per finished run: the machine it ran on, the model and the replica (its summary), the
start-up it measured (s: workers starting and loading the model, report/data.startup_seconds)
and its work factor, the time the work took ÷ the time the plan gave it (the plan's makespan
less its start-up). The same machine, model and replica plan from these instead of the
roofline alone: start-up = the weighted start-up, work = the modelled work × the weighted
factor. Recent runs weigh more (each run back halves the weight, RECENT_RUNS at most), so a
nightly batch plans better each night and follows a machine that changes.

Each row also keeps the run's output share: the output tokens its jobs wrote ÷ the tokens their
max_tokens allowed. That depends on the model and the prompts, not the machine, so every run of a
model calibrates the output length the next plan of that model expects (`output_share_for`).
"""

from __future__ import annotations

import math
import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from catalog.home import costserve_home
from solver.uncertainty import CALIBRATED_LOG_SPREAD, MEASURED_LOG_SPREAD

RECENT_RUNS = 8  # rows a calibration weighs; each older row has half the weight of the one after it
CALIBRATION_FILE = "calibration.sqlite"
CALIBRATION_LOCK_WAIT_S = 5.0


@dataclass(frozen=True)
class Calibration:
    """The measured start-up (s) and work factor (actual ÷ modelled work time) of one machine, model and replica."""

    startup_s: float
    work_factor: float
    runs: int
    last_at: float  # unix s of the newest run weighed
    log_spread: float = CALIBRATED_LOG_SPREAD  # σ of ln(work factor) over its runs (calibrated_spread)

    def describe(self) -> str:
        """`calibrated from N runs, last on DATE`, as plans show it."""
        return (
            f"calibrated from {self.runs} run{'s' if self.runs != 1 else ''}, last on "
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(self.last_at))}"
        )


def calibration_path(home: Path | None = None) -> Path:
    """The calibration store of `home` (default: $COSTSERVE_HOME)."""
    return (home or costserve_home()) / CALIBRATION_FILE


def _connect(path: Path) -> sqlite3.Connection:
    """The store, created on first use. A plain connection with a short lock wait: calibration is best effort and must
    never hold up the end of a run (a full disk or a locked file just skips one run's row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=CALIBRATION_LOCK_WAIT_S, isolation_level=None)
    con.execute(
        "CREATE TABLE IF NOT EXISTS runs (at REAL, machine TEXT, model TEXT, replica TEXT, startup_s REAL, "
        "work_factor REAL, run TEXT PRIMARY KEY, output_share REAL)"
    )
    if "output_share" not in {
        row[1] for row in con.execute("PRAGMA table_info(runs)")
    }:  # a store from before the column
        con.execute("ALTER TABLE runs ADD COLUMN output_share REAL")
    return con


def record_run(
    run_id: str,
    machine: str,
    model: str,
    replica: str,
    startup_s: float,
    work_factor: float,
    path: Path | None = None,
    output_share: float | None = None,
) -> None:
    """Keep one finished run's measurements (start-up s, work factor, output share); a run recorded again replaces
    its row."""
    con = _connect(path or calibration_path())
    try:
        con.execute(
            "INSERT OR REPLACE INTO runs (at, machine, model, replica, startup_s, work_factor, run, output_share) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), machine, model, replica, startup_s, work_factor, run_id, output_share),
        )
    finally:
        con.close()


def calibration_for(machine: str, model: str, replica: str, path: Path | None = None) -> Calibration | None:
    """The weighted calibration of this machine, model and replica; None before any run of them finished."""
    return calibrations_of(model, path).get((machine, replica))


def calibrations_of(model: str, path: Path | None = None) -> dict[tuple[str, str], Calibration]:
    """Every (machine or hardware, replica) that finished runs of `model` calibrate, each weighted over its recent runs."""
    path = path or calibration_path()
    if not path.is_file():
        return {}
    con = _connect(path)
    try:
        rows = con.execute(
            "SELECT at, machine, replica, startup_s, work_factor FROM runs WHERE model = ? ORDER BY at DESC", (model,)
        ).fetchall()
    finally:
        con.close()
    recent: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for at, machine, replica, startup_s, factor in rows:
        kept = recent.setdefault((machine, replica), [])
        if len(kept) < RECENT_RUNS:
            kept.append((at, startup_s, factor))
    return {
        key: Calibration(
            startup_s=_recent_mean([r[1] for r in kept]),
            work_factor=_recent_mean([r[2] for r in kept]),
            runs=len(kept),
            last_at=kept[0][0],
            log_spread=calibrated_spread([r[2] for r in kept]),
        )
        for key, kept in recent.items()
    }


def calibrated_spread(factors: list[float]) -> float:
    """σ of ln(true ÷ calibrated rate) of a calibration from its runs' work factors: their own spread once there are
    SPREAD_MIN_RUNS of them (never below MEASURED_LOG_SPREAD), else CALIBRATED_LOG_SPREAD (solver/uncertainty.py)."""
    logs = [math.log(f) for f in factors if f > 0]
    if len(logs) < SPREAD_MIN_RUNS:
        return CALIBRATED_LOG_SPREAD
    return max(MEASURED_LOG_SPREAD, statistics.stdev(logs))


SPREAD_MIN_RUNS = 3  # runs a calibration needs before its own spread replaces the shipped one


def _recent_mean(values: list[float]) -> float:
    """Mean of `values` (newest first), each older one weighing half the one before it."""
    weights = [0.5**i for i in range(len(values))]
    return sum(w * v for w, v in zip(weights, values)) / sum(weights)


@dataclass(frozen=True)
class OutputShare:
    """Output tokens the model's finished runs wrote ÷ the tokens their jobs' max_tokens allowed (weighted recent)."""

    share: float
    runs: int
    last_at: float

    def describe(self) -> str:
        """`N% of max_tokens (calibrated from N runs, last on DATE)`, as plans show it."""
        return f"{self.share:.0%} of max_tokens ({Calibration(0, 1, self.runs, self.last_at).describe()} of this model)"


def output_share_for(model: str, path: Path | None = None) -> OutputShare | None:
    """The weighted output share of `model`'s recorded runs on any machine; None before one finished."""
    path = path or calibration_path()
    if not path.is_file():
        return None
    con = _connect(path)
    try:
        rows = con.execute(
            "SELECT at, output_share FROM runs WHERE model = ? AND output_share > 0 ORDER BY at DESC LIMIT ?",
            (model, RECENT_RUNS),
        ).fetchall()
    finally:
        con.close()
    if not rows:
        return None
    return OutputShare(min(1.0, _recent_mean([r[1] for r in rows])), len(rows), rows[0][0])


def calibration_rows(path: Path | None = None) -> list[dict[str, object]]:
    """Every recorded run, newest first (`costserve calibration show`); `at` in unix time (s)."""
    path = path or calibration_path()
    if not path.is_file():
        return []
    con = _connect(path)
    try:
        rows = con.execute(
            "SELECT at, machine, model, replica, startup_s, work_factor, output_share, run FROM runs ORDER BY at DESC"
        ).fetchall()
    finally:
        con.close()
    return [
        {
            "at": at,
            "machine": machine,
            "model": model,
            "replica": replica,
            "start-up s": round(startup, 1),
            "work factor": round(factor, 3),
            "output share": None if share is None else round(share, 3),
            "run": run,
        }
        for at, machine, model, replica, startup, factor, share, run in rows
    ]


def reset_calibration(path: Path | None = None) -> int:
    """Forget every recorded run; how many there were."""
    path = path or calibration_path()
    if not path.is_file():
        return 0
    count = len(calibration_rows(path))
    path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return count
