"""Named points of a driver's preparation where a fault test kills it for real: `COSTSERVE_KILL_AT=POINT[#N]`.

A driver killed at a point a timer happens to hit proves little; these points are where a
half-prepared run could be left behind (the run recorded, some shards written, the shards
queued), so `tests/test_preparation_faults.py` and `bench.chaos` SIGKILL the driver exactly
there: the process sends SIGKILL to itself the N-th time (default the first) it reaches POINT.
Unset (always, outside those tests), a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

KILL_AT_ENV = "COSTSERVE_KILL_AT"
RUN_RECORDED = "run recorded"  # the run directory and its request and plan exist; no shard yet
SHARD_WRITTEN = "shard written"  # one more shard file is written and recorded
QUEUED = "queued"  # every shard is recorded and the first window is sent to the broker
POINTS = (RUN_RECORDED, SHARD_WRITTEN, QUEUED)

_reached: Counter[str] = Counter()


def kill_point(name: str) -> None:
    """SIGKILL this process if $COSTSERVE_KILL_AT names `name` and this is the N-th time it is reached."""
    spec = os.environ.get(KILL_AT_ENV)
    if not spec:
        return
    point, _, nth = spec.partition("#")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
