"""A 2-stage engine's processes listen on the loopback interface only, and meet through a private directory that is
gone as soon as they are connected."""

from __future__ import annotations

import os
from pathlib import Path

LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc/net/tcp{,6} write them


def listening_addresses(pids: list[int]) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp) of the TCP sockets in LISTEN state that `pids` hold."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(fields[1].split(":")[0])
    return found


def test_pipeline_stages_listen_on_loopback_only(tiny_llama_dir: Path) -> None:
    from solver.plan import Job, Replica
    from workers.engine import Engine

    engine = Engine(Replica.uniform(4, stages=2), model=tiny_llama_dir, processes=True)
    try:
        pids = [os.getpid()] + [c.pid for c in engine.pipeline.children]
        addresses = listening_addresses(pids)
        assert addresses and set(addresses) <= LOOPBACK, addresses  # gloo's pairs; no TCPStore on every interface
        assert engine.pipeline.rendezvous.name.startswith("costserve-stages-")
        assert not engine.pipeline.rendezvous.exists()  # removed once every rank joined: nothing is left in /tmp
        assert len(engine.generate([Job("a", 1, 4, prompt="hello", temperature=0.0)])[0].token_ids) == 4  # and the stages still talk
    finally:
        engine.close()
