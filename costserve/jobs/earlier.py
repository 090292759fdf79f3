"""Results of an earlier submit (`submit --resume-from RESULTS.jsonl`): which custom_ids are already done.

A user whose batch half finished (a laptop closed, a budget reached, an old run directory
deleted) re-submits the same job file with the results they have. Jobs whose custom_id has a
successful line there are neither planned nor run; their lines are carried into the new run's
store, so its results file again holds every custom_id exactly once. Failed lines (an `error`,
or a status other than 200) count as not done: those jobs run again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from costserve.errors import JobFileRejected


def _lines(path: Path) -> Iterator[tuple[int, str, dict]]:
    """(line number, raw line, parsed object) of every non-blank line; JobFileRejected names a bad one."""
    try:
        f = path.open(encoding="utf-8-sig")
    except OSError as exc:
        raise JobFileRejected(f"{path}: cannot read the earlier results: {exc.strerror or exc}") from None
    with f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError as exc:
                raise JobFileRejected(
                    f"{path}:{number}: not a JSON object ({exc.args[0].split(':')[0]}); "
                    "--resume-from takes a results file that costserve or OpenAI's Batch API wrote"
                ) from None
            if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
                raise JobFileRejected(
                    f"{path}:{number}: custom_id: missing; --resume-from takes a results file "
                    "(OpenAI Batch output lines)"
                )
            yield number, raw.rstrip("\n"), item


def _succeeded(item: dict) -> bool:
    response = item.get("response")
    return item.get("error") is None and isinstance(response, dict) and response.get("status_code") == 200


def done_custom_ids(path: Path) -> set[str]:
    """custom_ids with a successful line in the results file `path` (read whole, kept as ids only)."""
    return {item["custom_id"] for _, _, item in _lines(path) if _succeeded(item)}


def earlier_lines(path: Path, wanted: set[str]) -> Iterator[tuple[str, str]]:
    """(custom_id, output line) of each successful line of `path` whose custom_id is in `wanted`, the first one of
    each id only."""
    seen: set[str] = set()
    for _, raw, item in _lines(path):
        cid = item["custom_id"]
        if cid in wanted and cid not in seen and _succeeded(item):
            seen.add(cid)
            yield cid, raw
