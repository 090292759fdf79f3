"""The run's broker is watched like its workers: a broker that stops answering is noticed at the next poll.

The run store, not the broker, is the record of what is done. A broker that loses what it
held (killed, restarted empty) loses only the queued shards and the reports not yet read of
shards in flight; their jobs without a result are sent again, and a copy of a shard finds its
finished jobs done (run/shard_tasks.py). So:

- the embedded Redis is the run's own: when it dies, the local backend restarts it at once,
  with its workers, and sends the window's shards again (at most MAX_BROKER_RESTARTS times);
- an external `--broker`, or a SkyPilot run's head node, is not costserve's to restart: the
  driver keeps polling it for BROKER_GIVE_UP_S (`$COSTSERVE_BROKER_GIVE_UP_S`), sends the
  window's shards again if it comes back, and otherwise stops the run in one resumable line.
"""

from __future__ import annotations

import os

from costserve.durations import format_duration
from costserve.errors import BrokerError, BrokerGone
from costserve.notices import warn
from costserve.run.broker_url import redact_url
from costserve.store.run_state import Event
from costserve.store.runs import RunStore

BROKER_GIVE_UP_S = 120.0  # s an external broker or head node may stay unreachable before the run stops (resumable)
GIVE_UP_ENV = "COSTSERVE_BROKER_GIVE_UP_S"
EXIT_WAIT_S = 2.0  # s to wait for an embedded broker whose socket refused to be reaped (a SIGKILL takes milliseconds)
MAX_BROKER_RESTARTS = 3  # embedded broker restarts per driver; one that keeps dying points at the machine


def broker_errors() -> tuple[type[BaseException], ...]:
    """What a broker or result-store call raises when the broker does not answer: redis-py's and kombu's connection
    errors, and the OS's."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (OperationalError, RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)


def give_up_s() -> float:
    """How long (s) a run waits for its external broker: BROKER_GIVE_UP_S, or $COSTSERVE_BROKER_GIVE_UP_S."""
    return float(os.environ.get(GIVE_UP_ENV, BROKER_GIVE_UP_S))


class BrokerWatch:
    """When the broker named `name` (for the messages) stopped answering, and when to give up on it."""

    def __init__(self, store: RunStore, name: str) -> None:
        self.store, self.name = store, name
        self.wait_s = give_up_s()
        self.lost_since: float | None = None  # monotonic s of the first failed call of this outage

    def lost(self, error: BaseException, now: float) -> None:
        """A call to the broker failed with `error` at `now` (monotonic s): said and recorded once per outage;
        BrokerGone once it has not answered for `wait_s`."""
        why = (str(error).splitlines() or [type(error).__name__])[0][:200]
        if self.lost_since is None:
            self.lost_since = now
            self.store.event(Event.BROKER_LOST, f"{self.name}: {why}")
            warn(
                f"run {self.store.id}: {self.name} does not answer ({why}); waiting up to {format_duration(self.wait_s)} for it"
            )
        elif now - self.lost_since >= self.wait_s:
            raise BrokerGone(
                f"{self.name} has not answered for {format_duration(now - self.lost_since)} ({why}); once it is back, "
                f"`costserve resume {self.store.id}` continues the run"
            )

    def forget(self) -> None:
        """End the outage being timed without an event: the caller recorded how it ended (a restarted broker)."""
        self.lost_since = None

    def answered(self) -> bool:
        """The broker answered a poll; True when that ends an outage (the caller sends its shards in flight again)."""
        if self.lost_since is None:
            return False
        self.lost_since = None
        self.store.event(Event.BROKER_BACK, f"{self.name} answers again")
        warn(f"run {self.store.id}: {self.name} answers again; sending the shards in flight again")
        return True


def require_broker(url: str | None, consequence: str = "") -> None:
    """Raise BrokerError (password redacted, then `consequence`) when an external broker does not answer."""
    from deploy.local import broker_problem

    if url is not None and (problem := broker_problem(url)) is not None:
        raise BrokerError(f"--broker {redact_url(url)}: {problem}{consequence}")
