"""Consumer group rebalance latency. Run with `make bench`.

Target (issue 4): a rebalance of a 3-member group completes in < 1 s after the last
JoinGroup arrives, with no delay beyond group.initial.rebalance.delay.ms (0 here).

A stable group of three raw-wire members (kio-encoded requests, one socket each) is
made to rebalance again and again: the leader rejoins (as a consumer leader does when
topic metadata changes), a follower rejoins after its heartbeat says
REBALANCE_IN_PROGRESS, then the timed part: the last member's JoinGroup is sent, the
three JoinGroup answers are read, the leader sends the assignment, and all three
SyncGroup answers are read. Figures land in extra_info (milliseconds).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.wire_group import WireMember, rebalance

REBALANCE_IN_PROGRESS = 27
ROUNDS = 200


@pytest.fixture
def group(tmp_path: Path) -> Iterator[list[WireMember]]:
    broker: BrokerProcess = start_broker(tmp_path / "data", "--log-level", "warning")
    members = [WireMember(broker.kafka_port, "bench") for _ in range(3)]
    try:
        for count in (1, 2, 3):
            members[count - 1].obtain_member_id()
            rebalance(members[:count])
        yield members
    finally:
        for m in members:
            m.close()
        broker.stop()


def test_rebalance_of_three_members(benchmark: Any, group: list[WireMember]) -> None:
    leader = next(m for m in group if m.member_id == m.leader)
    followers = [m for m in group if m is not leader]
    timings: list[float] = []

    def start_rebalance() -> None:
        leader.send_join()
        assert followers[0].heartbeat() == REBALANCE_IN_PROGRESS
        followers[0].send_join()

    def finish_rebalance() -> None:
        started = time.perf_counter()
        followers[1].send_join()
        for m in group:
            m.receive_join()
        for m in followers:
            m.send_sync()
        leader.send_sync({mid: mid.encode() for mid in leader.members})
        for m in group:
            m.receive_sync()
        timings.append(time.perf_counter() - started)

    benchmark.pedantic(finish_rebalance, setup=start_rebalance, rounds=ROUNDS, iterations=1)
    ordered = sorted(timings)
    figures = {
        "rounds": len(ordered),
        "median ms": round(statistics.median(ordered) * 1000, 3),
        "p99 ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3) if len(ordered) > 1
        else round(ordered[0] * 1000, 3),
        "max ms": round(ordered[-1] * 1000, 3),
    }
    benchmark.extra_info.update(figures)
    print(f"\nrebalance of 3 members, last JoinGroup -> all SyncGroup answers: {figures}")
    assert ordered[-1] < 1.0
