"""Kafka 4's consumer group protocol (KIP-848) with confluent-kafka's
``group.protocol=consumer``: split, rebalance on join and leave, commit and resume,
static members, a broker killed mid-consumption; and the coordinator's answers on the
wire (epochs, offsets, both protocols in one broker)."""

from __future__ import annotations

import datetime
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.clients import bootstrap, create_topic, produce_confluent
from tests.integration.kafka.group_clients import GroupMember, split_evenly, wait_for
from tests.integration.kafka.wire_client import WireClient, encode_request, request_types
from tests.integration.kafka.wire_group import JOIN_GROUP, WireMember, join_request, rebalance

HEARTBEAT_68, DESCRIBE_69 = 68, 69
OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE_GROUPS, LIST_GROUPS, METADATA = 8, 9, 15, 16, 3
# Short heartbeats keep reconciliation fast: an assignment change waits for one.
FAST = ("--set", "kafka.group_consumer_heartbeat_interval_ms=200",
        "--set", "kafka.group_consumer_session_timeout_ms=6000")
CLIENT = "confluent-consumer"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(tmp_path_factory.mktemp("kip848") / "data", *FAST)
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


def keyed(prefix: str, n: int, partitions: int = 6) -> list[tuple[int, bytes, bytes, list]]:
    """Records keyed by partition, numbered, so per-key order can be checked."""
    return [(i % partitions, f"k{i % partitions}".encode(), f"{prefix}-{i:05d}".encode(), [])
            for i in range(n)]


def assert_per_key_order(members: tuple[GroupMember, ...]) -> None:
    for m in members:
        by_partition: dict[int, list[int]] = {}
        for partition, offset, _ in m.records:
            by_partition.setdefault(partition, []).append(offset)
        for partition, offsets in by_partition.items():
            assert offsets == sorted(offsets), (m.client, partition)


def test_six_partitions_split_across_two_then_three_members(
    broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = broker.kafka_port
    topic = topic_name()
    create_topic(port, topic, 6)
    group = f"split-{topic}"
    a = GroupMember(CLIENT, port, group, topic).start()
    b = GroupMember(CLIENT, port, group, topic).start()
    members: tuple[GroupMember, ...] = (a, b)
    try:
        wait_for(lambda: split_evenly((a, b), 6) and len(a.partitions) == 3,
                 what="two members to split 3/3", members=members)
        first = keyed("first", 120)
        produce_confluent(port, topic, first)
        wait_for(lambda: len(a.values()) + len(b.values()) >= 120, members=members)
        assert {p for p, _, _ in a.records} <= a.partitions
        assert {p for p, _, _ in b.records} <= b.partitions

        c = GroupMember(CLIENT, port, group, topic).start()
        members = (a, b, c)
        wait_for(lambda: split_evenly(members, 6) and all(len(m.partitions) == 2
                                                           for m in members),
                 what="three members to split 2/2/2", members=members)
        second = keyed("second", 120)
        produce_confluent(port, topic, second)
        wait_for(lambda: sum(len(m.values()) for m in members) >= 240, members=members)
        time.sleep(0.5)  # nothing more may arrive: no record is delivered twice
        every = a.values() + b.values() + c.values()
        assert sorted(every) == sorted(v for _, _, v, _ in first + second)
        assert_per_key_order(members)
    finally:
        for m in members:
            m.stop()


def test_a_member_that_leaves_hands_its_partitions_to_the_rest(
    broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = broker.kafka_port
    topic = topic_name()
    create_topic(port, topic, 6)
    group = f"leave-{topic}"
    a = GroupMember(CLIENT, port, group, topic).start()
    b = GroupMember(CLIENT, port, group, topic).start()
    try:
        wait_for(lambda: split_evenly((a, b), 6), what="two members", members=(a, b))
        b.stop()  # close() leaves the group with member epoch -1
        took = wait_for(lambda: a.partitions == frozenset(range(6)),
                        what="the remaining member to hold all", members=(a,))
        # Well before the 6 s session timeout: the leave, not an expiry, moved them.
        assert took < 5
        records = keyed("after", 60)
        produce_confluent(port, topic, records)
        wait_for(lambda: sum(v.startswith(b"after") for v in a.values()) >= 60, members=(a,))
        assert sorted(v for v in a.values() if v.startswith(b"after")) == sorted(
            v for _, _, v, _ in records)
    finally:
        a.stop()


def test_committed_offsets_are_where_the_next_consumer_resumes(
    broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = broker.kafka_port
    topic = topic_name()
    create_topic(port, topic, 6)
    group = f"resume-{topic}"
    records = keyed("r", 60)
    produce_confluent(port, topic, records)
    conf = {"bootstrap.servers": bootstrap(port), "group.id": group,
            "group.protocol": "consumer", "auto.offset.reset": "earliest",
            "enable.auto.commit": False}
    first = Consumer(conf)
    first.subscribe([topic])
    seen: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(seen) < 30 and time.monotonic() < deadline:
        msg = first.poll(0.2)
        if msg is not None and msg.error() is None:
            seen.append(msg.value())
            first.commit(message=msg, asynchronous=False)
    first.close()
    assert len(seen) == 30
    second = Consumer(conf)
    second.subscribe([topic])
    rest: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(rest) < 30 and time.monotonic() < deadline:
        msg = second.poll(0.2)
        if msg is not None and msg.error() is None:
            rest.append(msg.value())
    extra = second.poll(1.0)
    second.close()
    assert extra is None or extra.error() is not None
    assert sorted(seen + rest) == sorted(v for _, _, v, _ in records)


def test_a_static_member_rejoins_with_its_partitions_and_no_new_epoch(
    broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = broker.kafka_port
    topic = topic_name()
    create_topic(port, topic, 6)
    group = f"static-{topic}"
    a = GroupMember(CLIENT, port, group, topic, **{"group.instance.id": "a"}).start()
    b = GroupMember(CLIENT, port, group, topic, **{"group.instance.id": "b"}).start()
    members: tuple[GroupMember, ...] = (a, b)
    try:
        wait_for(lambda: split_evenly(members, 6), what="two static members", members=members)
        time.sleep(0.5)
        held_a, held_b = a.partitions, b.partitions
        epoch = describe(port, group).group_epoch
        a.stop()  # a static member leaves with epoch -2 and keeps its place
        again = GroupMember(CLIENT, port, group, topic, **{"group.instance.id": "a"}).start()
        members = (again, b)
        wait_for(lambda: again.partitions == held_a, what="the same partitions back",
                 members=members)
        assert b.partitions == held_b
        described = describe(port, group)
        assert described.group_epoch == epoch
        assert sorted(m.instance_id for m in described.members) == ["a", "b"]
    finally:
        for m in members:
            m.stop()


def test_committed_offsets_survive_a_broker_killed_mid_consumption(
    tmp_path: Path, topic_name: Callable[[], str]
) -> None:
    data = tmp_path / "data"
    first = start_broker(data, *FAST)
    port = first.kafka_port
    topic = topic_name()
    create_topic(port, topic, 6)
    records = keyed("kill", 120)
    produce_confluent(port, topic, records)
    group = f"kill-{topic}"
    consumer = Consumer({"bootstrap.servers": bootstrap(port), "group.id": group,
                         "group.protocol": "consumer", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen: list[bytes] = []
    second: BrokerProcess | None = None
    try:
        deadline = time.monotonic() + 20
        while len(seen) < 60 and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                seen.append(msg.value())
                consumer.commit(message=msg, asynchronous=False)
        assert len(seen) == 60
        partitions = [TopicPartition(topic, p) for p in range(6)]
        before = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        first.stop(signal.SIGKILL)
        # The same port, so the consumer finds the broker again; its membership is gone
        # (not durable, as in Kafka), its commits are not.
        second = start_broker(data, *FAST, "--kafka-port", str(port))
        after = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=20)}
        assert after == before
        # The client fetches on with its old assignment until a heartbeat tells it
        # UNKNOWN_MEMBER_ID; commits in that window are refused, and those records
        # come again once it has rejoined from the committed offsets.
        refused: set[bytes] = set()
        deadline = time.monotonic() + 30
        while len(set(seen)) < 120 and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                seen.append(msg.value())
                try:
                    consumer.commit(message=msg, asynchronous=False)
                except KafkaException as exc:
                    assert exc.args[0].code() == KafkaError.UNKNOWN_MEMBER_ID
                    refused.add(msg.value())
        assert sorted(set(seen)) == sorted(v for _, _, v, _ in records)
        # Only records whose commit was refused are read twice: nothing committed before
        # the kill is.
        twice = {v for v in seen if seen.count(v) > 1}
        assert twice <= refused
    finally:
        consumer.close()
        if second is not None:
            second.stop()
        if first.proc.poll() is None:
            first.stop()


# -- on the wire ------------------------------------------------------------------------


class Wire:
    def __init__(self, port: int) -> None:
        self.client = WireClient(port)
        self._correlation = 0

    def call(self, key: int, version: int, name: str, **fields: Any) -> Any:
        m = request_types(key, version)
        self._correlation += 1
        self.client.send(encode_request(getattr(m, name)(**fields), self._correlation))
        return self.client.read_response(key, version)[1]

    def heartbeat(self, group: str, member_id: str, epoch: int, version: int = 1,
                  **fields: Any) -> Any:
        m = request_types(HEARTBEAT_68, version)
        args: dict[str, Any] = {
            "group_id": group, "member_id": member_id, "member_epoch": epoch,
            "topic_partitions": None}
        if epoch == 0:
            args.update(rebalance_timeout=datetime.timedelta(seconds=30),
                        topic_partitions=(), subscribed_topic_names=())
        args.update(fields)
        owned = args["topic_partitions"]
        if owned is not None:
            args["topic_partitions"] = tuple(
                m.TopicPartitions(topic_id=t, partitions=ps) for t, ps in owned)
        return self.call(HEARTBEAT_68, version, "ConsumerGroupHeartbeatRequest", **args)

    def close(self) -> None:
        self.client.close()


def describe(port: int, group: str) -> Any:
    wire = Wire(port)
    try:
        answer = wire.call(DESCRIBE_69, 1, "ConsumerGroupDescribeRequest", group_ids=(group,),
                           include_authorized_operations=False)
        return answer.groups[0]
    finally:
        wire.close()


def topic_id(wire: Wire, topic: str) -> uuid.UUID:
    m = request_types(METADATA, 12)
    answer = wire.call(METADATA, 12, "MetadataRequest",
                       topics=(m.MetadataRequestTopic(topic_id=None, name=topic),),
                       allow_auto_topic_creation=False,
                       include_topic_authorized_operations=False)
    return answer.topics[0].topic_id


def assigned(answer: Any) -> list[tuple[uuid.UUID, list[int]]]:
    return [(t.topic_id, sorted(t.partitions)) for t in answer.assignment.topic_partitions]


def test_member_epochs_and_incremental_reconciliation_on_the_wire(
    broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = broker.kafka_port
    topic = topic_name()
    create_topic(port, topic, 4)
    group = f"wire-{topic}"
    a, b = Wire(port), Wire(port)
    try:
        tid = topic_id(a, topic)
        # v1: the member names itself.
        empty = a.heartbeat(group, "", 0, subscribed_topic_names=(topic,))
        assert (empty.error_code, empty.error_message) == (42, "MemberId can't be empty.")
        first = a.heartbeat(group, "a", 0, subscribed_topic_names=(topic,))
        assert (first.error_code, first.member_epoch) == (0, 1)
        assert assigned(first) == [(tid, [0, 1, 2, 3])]
        # A second member: the target splits 2/2, but b gets nothing a still owns.
        joined = b.heartbeat(group, "b", 0, subscribed_topic_names=(topic,))
        assert (joined.error_code, joined.member_epoch) == (0, 2)
        assert assigned(joined) == []
        # a is told to revoke first: its epoch stays until it owns no revoked partition.
        revoke = a.heartbeat(group, "a", 1, topic_partitions=[(tid, (0, 1, 2, 3))])
        assert revoke.member_epoch == 1
        kept = assigned(revoke)[0][1]
        assert len(kept) == 2
        done = a.heartbeat(group, "a", 1, topic_partitions=[(tid, tuple(kept))])
        assert (done.error_code, done.member_epoch) == (0, 2)
        released = b.heartbeat(group, "b", 2, topic_partitions=[])
        assert assigned(released) == [(tid, sorted({0, 1, 2, 3} - set(kept)))]
        described = describe(port, group)
        assert (described.group_state, described.group_epoch, described.assignment_epoch,
                described.assignor_name) == ("Stable", 2, 2, "uniform")
        # Epochs out of step are fenced; unknown members are unknown.
        assert a.heartbeat(group, "a", 7).error_code == 110  # FENCED_MEMBER_EPOCH
        assert a.heartbeat(group, "nobody", 2).error_code == 25  # UNKNOWN_MEMBER_ID
        assert a.heartbeat(group, "a", 0, subscribed_topic_names=(topic,),
                           server_assignor="sticky").error_code == 112  # UNSUPPORTED_ASSIGNOR
        # Leaving: epoch -1 in, -1 out; the group moves on to a new epoch.
        left = b.heartbeat(group, "b", -1)
        assert (left.error_code, left.member_epoch) == (0, -1)
        assert describe(port, group).group_epoch > 2
    finally:
        a.close()
        b.close()


def test_offsets_of_a_consumer_group_check_member_epochs(
    broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = broker.kafka_port
    topic = topic_name()
    create_topic(port, topic, 1)
    group = f"offsets-{topic}"
    wire = Wire(port)
    try:
        joined = wire.heartbeat(group, "m", 0, subscribed_topic_names=(topic,))
        epoch = joined.member_epoch

        def commit(member_id: str, member_epoch: int) -> int:
            m = request_types(OFFSET_COMMIT, 9)
            answer = wire.call(
                OFFSET_COMMIT, 9, "OffsetCommitRequest", group_id=group,
                generation_id_or_member_epoch=member_epoch, member_id=member_id,
                group_instance_id=None,
                topics=(m.OffsetCommitRequestTopic(name=topic, partitions=(
                    m.OffsetCommitRequestPartition(partition_index=0, committed_offset=5,
                                                   committed_leader_epoch=-1,
                                                   committed_metadata=""),)),))
            return int(answer.topics[0].partitions[0].error_code)

        def fetch(member_id: str | None, member_epoch: int) -> Any:
            m = request_types(OFFSET_FETCH, 9)
            answer = wire.call(
                OFFSET_FETCH, 9, "OffsetFetchRequest", require_stable=False, groups=(
                    m.OffsetFetchRequestGroup(group_id=group, member_id=member_id,
                                              member_epoch=member_epoch, topics=None),))
            return answer.groups[0]

        assert commit("m", epoch + 1) == 113  # STALE_MEMBER_EPOCH
        assert commit("other", epoch) == 25  # UNKNOWN_MEMBER_ID
        assert commit("", -1) == 25  # the group has members: only they commit
        assert commit("m", epoch) == 0
        assert fetch("m", epoch + 1).error_code == 113
        found = fetch(None, -1)  # an admin client
        assert found.error_code == 0
        assert [(t.name, p.committed_offset) for t in found.topics for p in t.partitions] == [
            (topic, 5)]
        assert fetch("m", epoch).error_code == 0
    finally:
        wire.close()


def test_classic_and_consumer_groups_in_one_broker(
    broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = broker.kafka_port
    topic = topic_name()
    create_topic(port, topic, 2)
    consumer_group, classic_group = f"new-{topic}", f"old-{topic}"
    wire = Wire(port)
    classic = WireMember(port, classic_group)
    joiner = WireMember(port, consumer_group)
    try:
        assert wire.heartbeat(consumer_group, "m", 0,
                              subscribed_topic_names=(topic,)).error_code == 0
        # A classic member cannot join a consumer group that has members...
        refused = joiner.call(join_request(consumer_group), JOIN_GROUP)
        assert refused.error_code == 23  # INCONSISTENT_GROUP_PROTOCOL
        # ...nor a consumer member a classic group that has members.
        classic.obtain_member_id()
        rebalance([classic])
        other = wire.heartbeat(classic_group, "m2", 0, subscribed_topic_names=(topic,))
        assert (other.error_code, other.error_message) == (
            69, f"Group {classic_group} is not a consumer group.")
        described = Wire(port)
        try:
            both = described.call(DESCRIBE_69, 0, "ConsumerGroupDescribeRequest",
                                  group_ids=(consumer_group, classic_group, "nope"),
                                  include_authorized_operations=False)
        finally:
            described.close()
        assert [(g.group_id, g.error_code, g.error_message) for g in both.groups] == [
            (consumer_group, 0, None),
            (classic_group, 69, f"Group {classic_group} is not a consumer group."),
            ("nope", 69, "Group nope not found."),
        ]
        # DescribeGroups (before v6) says Dead for a consumer group, as Kafka does.
        old = wire.call(DESCRIBE_GROUPS, 5, "DescribeGroupsRequest",
                        groups=(consumer_group,), include_authorized_operations=False)
        assert old.groups[0].group_state == "Dead"
        listed = wire.call(LIST_GROUPS, 5, "ListGroupsRequest", states_filter=(),
                           types_filter=("consumer",))
        kinds = {g.group_id: (g.group_type, g.protocol_type) for g in listed.groups}
        assert kinds[consumer_group] == ("consumer", "consumer")
        assert classic_group not in kinds
        # Once empty, a consumer group may become classic again.
        assert wire.heartbeat(consumer_group, "m", -1).error_code == 0
        joiner.obtain_member_id()
        rebalance([joiner])
        assert joiner.generation == 1
    finally:
        wire.close()
        classic.close()
        joiner.close()
