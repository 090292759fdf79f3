"""Validation speed and memory: `costserve validate` on generated job files of growing size.

Each size runs in a fresh process (`costserve validate`, the real CLI) and reports wall
time, lines per second and peak RSS; the ratios are against the smallest file in the same
run, so "constant memory" reads as a peak-RSS ratio near 1 while the line count grows 100x.

    python -m bench.validate_speed [--sizes 2000,20000,200000]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "jobs.jsonl"

# Run the CLI in a child and print its peak RSS (KiB on Linux) after it exits.
CHILD = (
    "import resource, sys\n"
    "from costserve.cli import app\n"
    "try:\n"
    "    app(sys.argv[1:], standalone_mode=False)\n"
    "finally:\n"
    "    print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def make_job_file(path: Path, lines: int, seed: int = 0) -> None:
    """Write `lines` jobs cycling through the shipped examples (unique ids, mixed forms), 1 in 1000 bad."""
    rng = random.Random(seed)
    examples = [json.loads(l) for l in EXAMPLES.read_text().splitlines()]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(lines):
            if i % 1000 == 999:
                f.write('{"custom_id": "broken", "method": \n')
                continue
            job = dict(examples[i % len(examples)], custom_id=f"job-{i}")
            if rng.random() < 0.2:
                text = job["body"].get("prompt") or job["body"]["messages"][-1]["content"]
                job = {"id": f"job-{i}", "prompt": text, "max_tokens": rng.choice([16, 64, 256])}
            f.write(json.dumps(job) + "\n")


def run_one(path: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS KiB) of `costserve validate --max-errors 0 path` in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, "validate", "--max-errors", "0", str(path)],
                          capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - start
    rss = [int(l.split()[1]) for l in proc.stderr.splitlines() if l.startswith("PEAK_RSS_KIB")]
    if not rss:
        raise SystemExit(f"validate failed on {path}:\n{proc.stderr[-2000:]}")
    return elapsed, rss[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,200000", help="comma-separated line counts")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"jobs-{n}.jsonl"
            make_job_file(path, n)
            seconds, rss_kib = run_one(path)
            rows.append({"lines": n, "MiB": path.stat().st_size / 2**20, "seconds": seconds,
                         "lines/s": n / seconds, "peak RSS MiB": rss_kib / 1024})
    table = pd.DataFrame(rows).set_index("lines")
    table["time ratio"] = table["seconds"] / table["seconds"].iloc[0]
    table["RSS ratio"] = table["peak RSS MiB"] / table["peak RSS MiB"].iloc[0]
    print(table.round(2).to_string())


if __name__ == "__main__":
    main()
