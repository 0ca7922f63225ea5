"""Committed offsets: durable across a restart, fetched and deleted as each client asks,
and Kafka's answers to bad commits on the wire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata as AioOffset
from aiokafka.structs import TopicPartition as AioTP
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import TopicPartition as KpTP
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata as KpOffset

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.clients import (
    bootstrap,
    create_topic,
    kafka_python_member,
    produce_confluent,
)
from tests.integration.kafka.group_clients import CLIENTS, GroupMember, wait_for
from tests.integration.kafka.wire_client import request_types
from tests.integration.kafka.wire_group import WireMember, rebalance

OFFSET_COMMIT, OFFSET_FETCH = 8, 9
UNKNOWN_TOPIC_OR_PARTITION, OFFSET_METADATA_TOO_LARGE = 3, 12
ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID = 22, 25
COMMITTED = {0: 4, 1: 7, 2: 2}  # per partition, of 10 records each


def fill(port: int, topic: str) -> None:
    create_topic(port, topic, 3)
    produce_confluent(port, topic, [(i % 3, b"k", b"v%d" % i, []) for i in range(30)])


def commit_as_member(client: str, port: int, group: str, topic: str) -> None:
    """Join the group, read a little, and commit COMMITTED with metadata, synchronously."""
    if client == "confluent":
        consumer = Consumer({"bootstrap.servers": bootstrap(port), "group.id": group,
                             "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        try:
            deadline = time.monotonic() + 20
            while len(consumer.assignment()) < 3 and time.monotonic() < deadline:
                consumer.poll(0.1)
            offsets = [TopicPartition(topic, p, o, metadata=f"m{p}") for p, o in COMMITTED.items()]
            consumer.commit(offsets=offsets, asynchronous=False)
        finally:
            consumer.close()
    elif client == "kafka-python":
        kp = kafka_python_member(port, topic, group_id=group, enable_auto_commit=False,
                                 auto_offset_reset="earliest")
        try:
            deadline = time.monotonic() + 20
            while len(kp.assignment()) < 3 and time.monotonic() < deadline:
                kp.poll(timeout_ms=100)
            kp.commit({KpTP(topic, p): KpOffset(o, f"m{p}", -1) for p, o in COMMITTED.items()})
        finally:
            kp.close()
    else:

        async def run() -> None:
            aio = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap(port), group_id=group,
                                   enable_auto_commit=False, auto_offset_reset="earliest")
            await aio.start()
            try:
                deadline = time.monotonic() + 20
                while len(aio.assignment()) < 3 and time.monotonic() < deadline:
                    await aio.getmany(timeout_ms=100)
                await aio.commit(
                    {AioTP(topic, p): AioOffset(o, f"m{p}") for p, o in COMMITTED.items()}
                )
            finally:
                await aio.stop()

        asyncio.run(run())


@pytest.mark.parametrize("client", CLIENTS)
def test_new_consumer_resumes_after_the_last_commit_across_a_restart(
    broker: BrokerProcess, topic_name: Callable[[], str], client: str
) -> None:
    topic = topic_name()
    group = f"resume-{client}"
    fill(broker.kafka_port, topic)
    commit_as_member(client, broker.kafka_port, group, topic)
    broker.stop()
    again = start_broker(broker.data_dir)
    try:
        port = again.kafka_port
        # Offsets and their metadata came back through the restart.
        kp = KafkaAdminClient(bootstrap_servers=bootstrap(port))
        try:
            offsets = kp.list_group_offsets(group)[group]
        finally:
            kp.close()
        # confluent-kafka sends metadata with its C string's NUL; it is stored as sent.
        assert {tp.partition: (o.offset, o.metadata.rstrip("\x00"))
                for tp, o in offsets.items()} == {
            p: (o, f"m{p}") for p, o in COMMITTED.items()
        }
        member = GroupMember(client, port, group, topic).start()
        expected = sum(10 - o for o in COMMITTED.values())
        try:
            wait_for(lambda: len(member.records) >= expected, members=(member,))
            time.sleep(0.2)
        finally:
            member.stop()
        first: dict[int, int] = {}
        for partition, offset, _ in member.records:
            first.setdefault(partition, offset)
        assert first == COMMITTED  # exactly after the commit, nothing before it
        assert len(member.records) == expected
    finally:
        again.stop()


def test_commit_without_group_membership_creates_a_simple_group(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    group = f"simple-{topic}"
    fill(port, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap(port), "group.id": group,
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        # An assign()ed consumer commits with generation -1 and no member id.
        consumer.commit(offsets=[TopicPartition(topic, 1, 6)], asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        assert [tp.offset for tp in committed] == [-1001, 6, -1001]  # -1001: none
    finally:
        consumer.close()
    admin = AdminClient({"bootstrap.servers": bootstrap(port)})
    listed = {g.group_id: g for g in admin.list_consumer_groups().result(10).valid}
    assert listed[group].is_simple_consumer_group and listed[group].state.name == "EMPTY"
    fetched = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)]
    )[group].result(10)
    assert [(tp.partition, tp.offset) for tp in fetched.topic_partitions] == [(1, 6)]


def _commit_request(
    group: str, generation: int, member_id: str, partitions: list[tuple[str, int, int, str]]
) -> object:
    m = request_types(OFFSET_COMMIT, 9)
    by_topic: dict[str, list] = {}
    for topic, partition, offset, metadata in partitions:
        by_topic.setdefault(topic, []).append(
            m.OffsetCommitRequestPartition(
                partition_index=partition, committed_offset=offset,
                committed_leader_epoch=-1, committed_metadata=metadata,
            )
        )
    return m.OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=generation, member_id=member_id,
        group_instance_id=None,
        topics=tuple(m.OffsetCommitRequestTopic(name=t, partitions=tuple(ps))
                     for t, ps in by_topic.items()),
    )


def _errors(response: object) -> dict[tuple[str, int], int]:
    return {
        (t.name, p.partition_index): int(p.error_code)
        for t in response.topics  # type: ignore[attr-defined]
        for p in t.partitions
    }


def test_bad_commits_get_kafkas_error_codes(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    fill(port, topic)
    group = f"bad-{topic}"
    member = WireMember(port, group)
    try:
        # No such group, but a generation: a commit from a generation that is gone.
        stale = member.call(_commit_request(group, 3, "x", [(topic, 0, 1, "")]), OFFSET_COMMIT)
        assert _errors(stale) == {(topic, 0): ILLEGAL_GENERATION}
        member.obtain_member_id()
        rebalance([member])
        # Per partition: unknown topics and partitions, and too much metadata.
        mixed = member.call(
            _commit_request(group, member.generation, member.member_id, [
                (topic, 0, 5, "ok"), (topic, 7, 1, ""), ("no-such-topic", 0, 1, ""),
                (topic, 1, 5, "x" * 5000),
            ]),
            OFFSET_COMMIT,
        )
        assert _errors(mixed) == {
            (topic, 0): 0, (topic, 7): UNKNOWN_TOPIC_OR_PARTITION,
            ("no-such-topic", 0): UNKNOWN_TOPIC_OR_PARTITION,
            (topic, 1): OFFSET_METADATA_TOO_LARGE,
        }
        # An old generation, an unknown member, and a non-member of an active group.
        for generation, member_id, code in (
            (member.generation - 1, member.member_id, ILLEGAL_GENERATION),
            (member.generation, "nobody", UNKNOWN_MEMBER_ID),
            (-1, "", UNKNOWN_MEMBER_ID),
        ):
            answer = member.call(
                _commit_request(group, generation, member_id, [(topic, 0, 9, "")]), OFFSET_COMMIT
            )
            assert _errors(answer) == {(topic, 0): code}, (generation, member_id)
        assert member.heartbeat() == 0  # the member is unharmed
        fetch = request_types(OFFSET_FETCH, 1)
        answer = member.call(
            fetch.OffsetFetchRequest(
                group_id=group,
                topics=(fetch.OffsetFetchRequestTopic(name=topic, partition_indexes=(0, 1)),),
            ),
            OFFSET_FETCH,
        )
        assert [(p.partition_index, p.committed_offset, p.metadata)
                for p in answer.topics[0].partitions] == [(0, 5, "ok"), (1, -1, "")]
    finally:
        member.close()


def test_offset_fetch_every_partition_and_batched_groups(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    fill(port, topic)
    wire = WireMember(port, "unused")
    try:
        for group, partitions in (("fetch-a", [(0, 3), (2, 8)]), ("fetch-b", [(1, 1)])):
            answer = wire.call(
                _commit_request(group, -1, "", [(topic, p, o, f"{group}") for p, o in partitions]),
                OFFSET_COMMIT,
            )
            assert set(_errors(answer).values()) == {0}
        m = request_types(OFFSET_FETCH, 9)
        answer = wire.call(
            m.OffsetFetchRequest(
                groups=(
                    m.OffsetFetchRequestGroup(group_id="fetch-a", member_id=None,
                                              member_epoch=-1, topics=None),
                    m.OffsetFetchRequestGroup(
                        group_id="fetch-b", member_id=None, member_epoch=-1,
                        topics=(m.OffsetFetchRequestTopics(name=topic, partition_indexes=(0, 1)),),
                    ),
                    m.OffsetFetchRequestGroup(group_id="fetch-none", member_id=None,
                                              member_epoch=-1, topics=None),
                ),
                require_stable=True,
            ),
            OFFSET_FETCH,
        )
        got = {
            g.group_id: [(t.name, p.partition_index, p.committed_offset)
                         for t in g.topics for p in t.partitions]
            for g in answer.groups
        }
        assert got == {
            "fetch-a": [(topic, 0, 3), (topic, 2, 8)],  # topics=null: every committed partition
            "fetch-b": [(topic, 0, -1), (topic, 1, 1)],
            "fetch-none": [],
        }
        assert all(g.error_code == 0 for g in answer.groups)
    finally:
        wire.close()


def test_offset_delete_for_empty_and_active_groups(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    fill(port, topic)
    group = f"delete-{topic}"
    member = GroupMember("confluent", port, group, topic).start()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap(port))
    try:
        wait_for(lambda: len(member.records) >= 30, members=(member,))
        wait_for(lambda: sorted(
            o.offset for o in admin.list_group_offsets(group)[group].values()) == [10, 10, 10],
            what="auto commits")
        # Active members consume `topic`: its offsets stay.
        result = admin.delete_group_offsets(group, [KpTP(topic, 0), KpTP("no-such-topic", 0)])
        assert {tp.topic: err.__name__ for tp, err in result.items()} == {
            topic: "GroupSubscribedToTopicError", "no-such-topic": "UnknownTopicOrPartitionError"
        }
        member.stop()
        result = admin.delete_group_offsets(group, [KpTP(topic, 0)])
        assert {tp: err.__name__ for tp, err in result.items()} == {KpTP(topic, 0): "NoError"}
        assert sorted(tp.partition for tp in admin.list_group_offsets(group)[group]) == [1, 2]
        # Deleting the last offsets of an empty group deletes the group.
        admin.delete_group_offsets(group, [KpTP(topic, 1), KpTP(topic, 2)])
        assert group not in {g["group_id"] for g in admin.list_groups()}
    finally:
        if member._thread.is_alive():
            member.stop()
        admin.close()
