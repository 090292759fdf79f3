"""The broker watch on a virtual clock: an outage is said and recorded once, waited for, then a resumable stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from costserve.errors import BrokerGone, StopReason
from costserve.run.broker_watch import BrokerWatch
from costserve.store.run_state import Event
from costserve.store.runs import RunStore


def test_an_outage_is_recorded_once_waited_for_and_then_stops_the_run(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "a", "prompt": "hi"}\n')
    store = RunStore.create(jobs, 1)
    monkeypatch.setenv("COSTSERVE_BROKER_GIVE_UP_S", "30")
    watch = BrokerWatch(store, "the broker redis://h:6379/0")
    assert not watch.answered()  # no outage: nothing to resend
    refused = ConnectionRefusedError(111, "Connection refused")
    watch.lost(refused, now=100.0)
    watch.lost(refused, now=129.0)  # still within the 30 s
    (lost,) = store.events(Event.BROKER_LOST)
    assert "the broker redis://h:6379/0" in lost and "Connection refused" in lost
    assert watch.answered() and store.events(Event.BROKER_BACK)  # back: the caller sends its shards again
    watch.lost(refused, now=200.0)  # a new outage starts its own wait
    with pytest.raises(BrokerGone) as stopped:
        watch.lost(refused, now=230.0)
    assert stopped.value.reason is StopReason.BROKER_GONE
    assert "has not answered for 30s" in str(stopped.value) and f"costserve resume {store.id}" in str(stopped.value)


def test_an_embedded_broker_whose_socket_refuses_is_told_dead_from_busy(tmp_path: Path) -> None:
    import os
    import signal

    from deploy.local import EmbeddedRedis

    broker = EmbeddedRedis(tmp_path)
    try:
        assert broker.alive(wait_s=0.2)  # answering: still running after the wait
        os.kill(broker.pid, signal.SIGKILL)
        assert not broker.alive(wait_s=5.0)  # reaped within the wait, not seen as a busy broker
        assert broker.exit_status() == "killed by SIGKILL"
    finally:
        broker.stop()
    assert not broker.socket.exists()
