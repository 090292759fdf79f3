"""Pipeline stages as processes: hidden states flow stage to stage over torch.distributed.

Rank r < last runs stage r in its own process (`python -m workers.pipeline`); the last
rank is the process that owns the Engine: it holds the last stage, the LM head and the
batcher. Commands (token ids, positions, cache slots) go from the last rank to rank 0,
hidden states from rank r to r+1 — a ring, so no rank ever waits on its own output and
several micro-batches are in flight at once. Sends are asynchronous (`isend`) so the
ring cannot deadlock. Backend: gloo on CPU, NCCL when every stage is on CUDA.

Nothing listens beyond this machine: the ranks meet through a FileStore in a private (0700)
temporary directory instead of a TCPStore (which binds every interface), and gloo's pairs
bind the loopback interface only (GLOO_SOCKET_IFNAME).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from solver.plan import Replica
from workers.batching import Command
from workers.cpu import MATMUL_ENV, available_cpus, matmul_dtype
from workers.loader import build_stage, read_model_args
from workers.model import ModelArgs, StageModel

RUN, SETUP, STOP = 0, 1, 2
HEADER = 6  # kind, rows, tokens per row, slots, max_seq, KV dtype (0 fp32, 1 bf16)
KV_DTYPES = (torch.float32, torch.bfloat16)
TIMEOUT = timedelta(minutes=30)
LOOPBACK = "lo"  # Linux's loopback interface: gloo binds its pairs there


def join_group(store_file: Path, rank: int, world: int) -> None:
    """Join the stages' gloo process group through a FileStore at `store_file`, on the loopback interface."""
    os.environ["GLOO_SOCKET_IFNAME"] = LOOPBACK
    dist.init_process_group(
        "gloo", store=dist.FileStore(str(store_file), world), rank=rank, world_size=world, timeout=TIMEOUT
    )
    dist.barrier()  # every rank is connected: the store is no longer read, and its directory can go


class _Sender:
    """Asynchronous sends to one peer; keeps each tensor alive until its send completes."""

    def __init__(self, dst: int) -> None:
        self.dst = dst
        self.pending: deque[tuple[Any, Tensor]] = deque()  # (torch.distributed Work, the tensor it sends)

    def send(self, *tensors: Tensor) -> None:
        for t in tensors:
            t = t.contiguous()
            self.pending.append((dist.isend(t, self.dst), t))
        while self.pending and self.pending[0][0].is_completed():
            self.pending.popleft()

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft()[0].wait()


def _recv(shape: tuple[int, ...], dtype: torch.dtype, src: int) -> Tensor:
    t = torch.empty(shape, dtype=dtype)
    dist.recv(t, src)
    return t


def _recv_batch(src: int, rows: int, width: int, first: bool, dim: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x = _recv((rows, width), torch.long, src) if first else _recv((rows, width, dim), torch.float32, src)
    pos = _recv((rows, width), torch.long, src)
    slots = _recv((rows,), torch.long, src)
    last = _recv((rows,), torch.long, src)
    return x, pos, slots, last


def stage_loop(rank: int, world: int, stage: StageModel, args: ModelArgs) -> None:
    """Serve one non-last stage until a STOP header arrives."""
    src = world - 1 if rank == 0 else rank - 1
    out = _Sender(rank + 1)
    while True:
        header = _recv((HEADER,), torch.long, src)
        kind, rows, width, slots_total, max_seq, kv = (int(v) for v in header)
        if kind == STOP:
            out.send(header)
            out.drain()
            return
        if kind == SETUP:
            stage.setup_cache(slots_total, max_seq, KV_DTYPES[kv])
            out.send(header)
            continue
        x, pos, slots, last = _recv_batch(src, rows, width, rank == 0, args.dim)
        h = stage(x, slots, pos, last)
        out.send(header, h, pos, slots, last)


class ProcessPipeline:
    """Stages 0..n-2 in child processes, the last stage here; submit/collect like LocalPipeline."""

    def __init__(
        self, model_dir: Path, args: ModelArgs, replica: Replica, threads_per_stage: int | None = None
    ) -> None:
        self.args, self.world = args, len(replica.stages)
        self.rendezvous = Path(tempfile.mkdtemp(prefix="costserve-stages-"))  # 0700: only this user can join
        store_file = self.rendezvous / "store"
        threads = threads_per_stage or max(1, available_cpus() // self.world)
        # every stage widens quantized weights to the same dtype as this process measured (workers/cpu.py)
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(threads),
            MATMUL_ENV: "bf16" if matmul_dtype() == torch.bfloat16 else "fp32",
        }
        self.children = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "workers.pipeline",
                    "--rank",
                    str(r),
                    "--world",
                    str(self.world),
                    "--store",
                    str(store_file),
                    "--model-dir",
                    str(model_dir),
                    "--replica",
                    replica.model_dump_json(),
                    "--threads",
                    str(threads),
                ],
                env=env,
            )
            for r in range(self.world - 1)
        ]
        torch.set_num_threads(threads)
        join_group(store_file, self.world - 1, self.world)
        shutil.rmtree(self.rendezvous, ignore_errors=True)  # nothing left in /tmp, however this process ends
        self.stage = build_stage(model_dir, args, replica.stages[-1])
        self.to_first = _Sender(0)
        self.closed = False

    def setup(self, slots: int, max_seq: int, dtype: torch.dtype) -> None:
        """Allocate KV caches on every stage for `slots` sequences of `max_seq` tokens."""
        self.to_first.send(torch.tensor([SETUP, 0, 0, slots, max_seq, KV_DTYPES.index(dtype)]))
        self.stage.setup_cache(slots, max_seq, dtype)
        _recv((HEADER,), torch.long, self.world - 2)  # the SETUP header, after every stage did it

    def submit(self, cmd: Command) -> None:
        rows, width = cmd.tokens.shape
        self.to_first.send(torch.tensor([RUN, rows, width, 0, 0, 0]), cmd.tokens, cmd.pos, cmd.slots, cmd.last_index)

    def collect(self) -> Tensor:
        header = _recv((HEADER,), torch.long, self.world - 2)
        rows, width = int(header[1]), int(header[2])
        h, pos, slots, last = _recv_batch(self.world - 2, rows, width, False, self.args.dim)
        return self.stage(h, slots, pos, last)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.to_first.send(torch.tensor([STOP, 0, 0, 0, 0, 0]))
        _recv((HEADER,), torch.long, self.world - 2)
        self.to_first.drain()
        for c in self.children:
            c.wait(timeout=60)
        dist.destroy_process_group()
        shutil.rmtree(self.rendezvous, ignore_errors=True)

    def abort(self) -> None:
        """Tear a broken pipeline down without talking to it: SIGKILL the stage processes, drop the process group.

        For a pipeline whose peer died or timed out mid-batch; `close()` would wait on it.
        """
        self.closed = True
        for c in self.children:
            if c.poll() is None:
                c.kill()
            c.wait()
        try:
            dist.destroy_process_group()
        except (RuntimeError, ValueError):
            pass  # already gone with its peer; nothing left to free
        shutil.rmtree(self.rendezvous, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description="one pipeline stage process (started by the engine)")
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--store", type=Path, required=True, help="the FileStore the ranks meet through")
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--replica", required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    replica = Replica.model_validate_json(a.replica)
    args = read_model_args(a.model_dir)
    join_group(a.store, a.rank, a.world)
    stage = build_stage(a.model_dir, args, replica.stages[a.rank])
    try:
        stage_loop(a.rank, a.world, stage, args)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
