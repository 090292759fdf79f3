"""One job record: the same prompt gets the same workload class in planning, sharding, re-planning and resume."""

from __future__ import annotations

import json
from pathlib import Path

from costserve.jobs.assignment import class_counts
from costserve.jobs.reader import valid_jobs
from costserve.request import BatchRequest
from costserve.jobs.scan import scan_jobs
from costserve.run.prepare import shard_jobs, write_shards
from costserve.run.resume import unfinished_jobs
from costserve.store.runs import RunStore
from solver.workload import class_name, workload_from_jobs
from costserve.store.shard_files import read_shard


def test_a_prompt_has_one_class_in_planning_sharding_replanning_and_resume(tmp_path: Path) -> None:
    # 1,025 characters: ceil(1025/4) = 257 tokens, just over the 256-token class edge (a floor estimate gave 256)
    prompts = {"edge": "x" * 1025, "chat": None, "short": "hi"}
    lines = [json.dumps({"id": "edge", "prompt": prompts["edge"], "max_tokens": 64}),
             json.dumps({"custom_id": "chat", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"messages": [{"role": "system", "content": "y" * 600},
                                               {"role": "user", "content": "z" * 424}], "max_tokens": 64}}),
             json.dumps({"id": "short", "prompt": prompts["short"], "max_tokens": 64})]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    request = BatchRequest(jobs=path, shard_size=1)

    scan = scan_jobs(request, 256, lambda e: None)  # planning's view
    planned = {k.name: k.count for k in scan.workload.classes}
    assert planned == {"in 256-2048 / out 0-128": 2, "in 0-256 / out 0-128": 1}

    store = RunStore.create(path, scan.jobs, scan.sha256)
    write_shards(store, request, scan, 256, lambda job: "local")  # sharding's view: what workers and resume read
    sharded = [job for sid, *_ in store.shards() for job in read_shard(store.dir, sid)]
    read = list(valid_jobs(path, 256, lambda e: None))
    assert sharded == read  # the shard round trip is the same record, field for field
    assert class_counts(sharded) == planned
    assert {k.name: k.count for k in workload_from_jobs(sharded).classes} == planned  # re-planning's view

    resumed = unfinished_jobs(store)  # resume's view: no results yet, every job once
    assert [j.custom_id for j in resumed] == ["edge", "chat", "short"]
    assert {j.custom_id: class_name(j.estimated_input_tokens(), j.max_tokens) for j in resumed} == {
        "edge": "in 256-2048 / out 0-128", "chat": "in 256-2048 / out 0-128", "short": "in 0-256 / out 0-128"}

    shard_jobs(store, resumed, lambda job: "g1", 8)  # a resume re-shards them: still once each
    assert sorted(j.custom_id for j in unfinished_jobs(store)) == ["chat", "edge", "short"]
