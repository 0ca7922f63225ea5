"""Join to stable assignment: the consumer group protocol (KIP-848) against the classic
one, for 1, 3 and 10 members. Run with `make bench`.

Each round is a new group over one 30-partition topic that members join one at a time,
each join followed by the group settling, from the first member's first request to the
last member's stable assignment. Every member is a raw-wire client (kio-encoded
requests, one socket each) that answers at once, so the figure is the coordinator's
work plus the round trips, not a client's timers:

- classic: the new member obtains its id (KIP-394), every member rejoins (JoinGroup),
  the leader's SyncGroup carries an assignment, until the last SyncGroup answer;
- consumer: the new member's first ConsumerGroupHeartbeat (epoch 0), then every member
  heartbeats in turn, reporting what it owns, until all are at the group epoch and the
  30 partitions are held once each: the incremental reconciliation's round trips (the
  others revoke first, then the newcomer receives what they released).

Real clients add their own waits: librdkafka heartbeats every
kafka.group_consumer_heartbeat_interval_ms (5 s by default) once stable.
"""

from __future__ import annotations

import datetime
import itertools
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.clients import create_topic
from tests.integration.kafka.wire_client import WireClient, encode_request, request_types
from tests.integration.kafka.wire_group import WireMember, rebalance

PARTITIONS = 30
ROUNDS = 20
HEARTBEAT, METADATA = 68, 3
_groups = itertools.count()
_correlation = itertools.count(1)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, uuid.UUID]]:
    proc = start_broker(tmp_path_factory.mktemp("groups") / "data", "--log-level", "warning")
    create_topic(proc.kafka_port, "bench", PARTITIONS)
    client = WireClient(proc.kafka_port)
    m = request_types(METADATA, 12)
    client.send(encode_request(m.MetadataRequest(
        topics=(m.MetadataRequestTopic(topic_id=None, name="bench"),),
        allow_auto_topic_creation=False, include_topic_authorized_operations=False), 1))
    topic_id = client.read_response(METADATA, 12)[1].topics[0].topic_id
    client.close()
    yield proc, topic_id
    proc.stop()


class Member:
    def __init__(self, port: int, group: str, topic_id: uuid.UUID) -> None:
        self.client = WireClient(port)
        self.group = group
        self.topic_id = topic_id
        self.member_id = uuid.uuid4().hex
        self.epoch = 0
        self.owned: tuple[int, ...] = ()

    def heartbeat(self) -> None:
        m = request_types(HEARTBEAT, 1)
        joining = self.epoch == 0
        request = m.ConsumerGroupHeartbeatRequest(
            group_id=self.group, member_id=self.member_id, member_epoch=self.epoch,
            rebalance_timeout=datetime.timedelta(milliseconds=30_000 if joining else -1),
            subscribed_topic_names=("bench",) if joining else None,
            topic_partitions=(m.TopicPartitions(topic_id=self.topic_id, partitions=self.owned),)
            if self.owned else (),
        )
        self.client.send(encode_request(request, next(_correlation)))
        answer = self.client.read_response(HEARTBEAT, 1)[1]
        assert answer.error_code == 0, answer
        self.epoch = answer.member_epoch
        if answer.assignment is not None:
            self.owned = tuple(p for t in answer.assignment.topic_partitions
                               for p in t.partitions)


def consumer_join(port: int, topic_id: uuid.UUID, size: int) -> float:
    group_id = f"c-{next(_groups)}"
    members = [Member(port, group_id, topic_id) for _ in range(size)]
    try:
        started = time.perf_counter()
        for count in range(1, size + 1):
            members[count - 1].heartbeat()
            group = members[:count]
            while True:
                held = sorted(p for m in group for p in m.owned)
                if all(m.epoch == count for m in group) and held == list(range(PARTITIONS)):
                    break
                for member in group:
                    member.heartbeat()
        return time.perf_counter() - started
    finally:
        for member in members:
            member.client.close()


def classic_join(port: int, size: int) -> float:
    group = f"k-{next(_groups)}"
    members = [WireMember(port, group) for _ in range(size)]
    try:
        started = time.perf_counter()
        for count in range(1, size + 1):
            members[count - 1].obtain_member_id()
            rebalance(members[:count])
        return time.perf_counter() - started
    finally:
        for member in members:
            member.close()


@pytest.mark.parametrize("size", [1, 3, 10])
@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_join_to_stable_assignment(
    benchmark: Any, broker: tuple[BrokerProcess, uuid.UUID], protocol: str, size: int
) -> None:
    proc, topic_id = broker
    timings: list[float] = []

    def join() -> None:
        if protocol == "consumer":
            timings.append(consumer_join(proc.kafka_port, topic_id, size))
        else:
            timings.append(classic_join(proc.kafka_port, size))

    benchmark.pedantic(join, rounds=ROUNDS, iterations=1)
    ordered = sorted(timings)
    figures = {
        "rounds": len(ordered),
        "median ms": round(statistics.median(ordered) * 1000, 2),
        "max ms": round(ordered[-1] * 1000, 2),
    }
    benchmark.extra_info.update(figures)
    print(f"\n{protocol} group of {size}, join -> stable assignment: {figures}")
    assert ordered[-1] < 5.0
