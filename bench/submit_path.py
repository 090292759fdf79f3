"""How one submit's request travels through the code: the functions that receive it, in order, to the results.

Runs `costserve submit JOBS --yes` in this process on a small job file with the embedded model
(its workers are processes of their own, not traced). A hop is a call, in one of the five packages,
that is handed the BatchRequest (an argument holds one); it prints each hop (file:function,
`--hops`) and a table of files by entries; `returns` counts entries into a file already left.

    python -m bench.submit_path [--hops]
"""

from __future__ import annotations

import collections
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("costserve", "solver", "workers", "deploy", "catalog")


def main() -> None:
    show_hops = "--hops" in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="submit-path-"))
    os.environ["COSTSERVE_HOME"] = str(tmp / "home")
    jobs = tmp / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"j{i}", "prompt": f"hi {i}", "max_tokens": 4}) + "\n" for i in range(8)))
    from workers.model_source import resolve_model_dir

    resolve_model_dir(None)  # the embedded model's one-time conversion is not a hop of the submit: done before tracing

    from costserve.cli import app

    from costserve.request import BatchRequest

    hops: list[tuple[str, str]] = []

    def profile(frame, event, arg):  # type: ignore[no-untyped-def]
        if event != "call":
            return
        code = frame.f_code
        args = [frame.f_locals.get(n) for n in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]]
        if not any(isinstance(a, BatchRequest) for a in args):
            return
        path = code.co_filename
        try:
            rel = Path(path).resolve().relative_to(ROOT)
        except ValueError:
            return
        if rel.parts[0] not in PACKAGES:
            return
        hops.append((str(rel), code.co_name))

    sys.setprofile(profile)
    try:
        app(["submit", str(jobs), "--yes", "--replica", str(ROOT / "examples" / "replica-mixed.json")], standalone_mode=False)
    except SystemExit:
        pass
    finally:
        sys.setprofile(None)
    entries: collections.Counter[str] = collections.Counter()
    seen: set[str] = set()
    returns = 0
    for i, (name, _) in enumerate(hops):
        if i and hops[i - 1][0] == name:
            continue  # still in the same file
        entries[name] += 1
        returns += name in seen
        seen.add(name)
    if show_hops:
        for i, (name, fn) in enumerate(hops, 1):
            print(f"{i:4d} {name}:{fn}")
    print(f"{len(entries)} files, {len(hops)} calls handed the request, {returns} returns to a file already left")
    for name, n in entries.most_common():
        print(f"{n:5d}  {name}")


if __name__ == "__main__":
    main()
