"""Old clients: Produce v0-2, Fetch v0-3, ListOffsets v0 and OffsetCommit/OffsetFetch v0-1
with magic 0 and 1 message sets, through kafka-python pinned to old broker versions.

kafka-python's ``api_version`` makes it speak as it would to a Kafka 0.8.2, 0.9 or 0.10
broker: the old request versions and the old message formats (magic 0 before 0.10,
magic 1 from 0.10, with their own CRC-32 and compressed wrapper messages). What it
writes is stored as record batches, so modern clients read it, and what modern
clients write reaches the old ones converted back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.structs import OffsetAndMetadata
from kio.schema.errors import ErrorCode

from tests.broker_process import BrokerProcess
from tests.integration.kafka.clients import (
    bootstrap,
    consume_aiokafka,
    consume_confluent,
    create_topic,
    produce_confluent,
)
from tests.integration.kafka.wire_client import WireClient, encode_request, request_types

PRODUCE = 0

# (api_version, codec): every legacy codec in both magics, and magic-0 lz4 with the
# 0.8 frame checksum Kafka tolerates.
OLD_PRODUCERS = [
    ((0, 8, 2), None),
    ((0, 8, 2), "lz4"),
    ((0, 9), "gzip"),
    ((0, 9), "snappy"),
    ((0, 10), None),
    ((0, 10), "lz4"),
    ((0, 10), "gzip"),
]
T0 = 1_700_000_000_000


def _produce_old(port: int, topic: str, api_version: tuple[int, ...], codec: str | None,
                 n: int) -> list[int]:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap(port), api_version=api_version, compression_type=codec,
        linger_ms=20,
    )
    futures = [
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode() * 20,
                      partition=0, timestamp_ms=T0 + i)
        for i in range(n)
    ]
    producer.flush(20)
    offsets = [f.get(10).offset for f in futures]
    producer.close(5)
    return offsets


def _consume_old(port: int, topic: str, api_version: tuple[int, ...], n: int,
                 **conf: object) -> list:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap(port), api_version=api_version,
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=5000,
        **conf,
    )
    consumer.assign([TopicPartition(topic, 0)])
    out = []
    for m in consumer:
        out.append(m)
        if len(out) == n:
            break
    consumer.close()
    return out


@pytest.mark.parametrize(("api_version", "codec"), OLD_PRODUCERS)
def test_an_old_client_produces_and_consumes_its_own_message_format(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str],
    api_version: tuple[int, ...], codec: str | None,
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    offsets = _produce_old(kafka_broker.kafka_port, topic, api_version, codec, 20)
    assert offsets == list(range(20))
    got = _consume_old(kafka_broker.kafka_port, topic, api_version, 20)
    assert [(m.offset, m.key, m.value) for m in got] == [
        (i, f"k{i}".encode(), f"v{i}".encode() * 20) for i in range(20)
    ]
    if api_version >= (0, 10):
        # magic 1 carries the producer's timestamps both ways
        assert [m.timestamp for m in got] == [T0 + i for i in range(20)]
    # The same messages, as modern clients see them (record batches, magic 2).
    expected = [(0, f"k{i}".encode(), f"v{i}".encode() * 20, ()) for i in range(20)]
    for consume in (consume_confluent, consume_aiokafka):
        modern = consume(kafka_broker.kafka_port, topic, 1, 20)
        assert [m.content() for m in modern] == expected
        assert [m.offset for m in modern] == list(range(20))
    assert "Traceback" not in kafka_broker.stderr_text()


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd", "lz4"])
@pytest.mark.parametrize("api_version", [(0, 8, 2), (0, 10)])
def test_old_consumers_read_what_a_modern_producer_wrote(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str],
    api_version: tuple[int, ...], codec: str,
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    msgs = [(0, f"k{i}".encode(), f"value-{i}".encode(), [("h", b"x")]) for i in range(30)]
    acked = produce_confluent(kafka_broker.kafka_port, topic, msgs, **{"compression.type": codec})
    assert [o for _, o in acked] == list(range(30))
    got = _consume_old(kafka_broker.kafka_port, topic, api_version, 30)
    # Headers cannot travel in magic 0/1; keys, values and offsets do.
    assert [(m.offset, m.key, m.value) for m in got] == [
        (i, f"k{i}".encode(), f"value-{i}".encode()) for i in range(30)
    ]


def test_an_old_consumer_starting_mid_batch_gets_no_earlier_message(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str],
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    msgs = [(0, b"k", f"m{i}".encode(), []) for i in range(10)]
    produce_confluent(kafka_broker.kafka_port, topic, msgs, **{"linger.ms": 100})
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap(kafka_broker.kafka_port), api_version=(0, 10),
        enable_auto_commit=False, consumer_timeout_ms=5000,
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 7)
    got = [(m.offset, m.value) for m in consumer]
    consumer.close()
    assert got == [(7, b"m7"), (8, b"m8"), (9, b"m9")]


@pytest.mark.parametrize("api_version", [(0, 8, 2), (0, 9)])
def test_old_clients_commit_and_read_back_offsets_and_list_offsets(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str], api_version: tuple[int, ...],
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    _produce_old(kafka_broker.kafka_port, topic, api_version, None, 5)
    group = f"g-{topic}"
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap(kafka_broker.kafka_port), api_version=api_version,
        group_id=group, enable_auto_commit=False,
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    # ListOffsets v0: earliest and latest
    assert consumer.beginning_offsets([tp]) == {tp: 0}
    assert consumer.end_offsets([tp]) == {tp: 5}
    consumer.commit({tp: OffsetAndMetadata(3, "m", -1)})
    assert consumer.committed(tp) == 3
    consumer.close()
    # The commit is the group's, whichever version wrote it: a modern client sees it.
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as CTP

    modern = Consumer({"bootstrap.servers": bootstrap(kafka_broker.kafka_port),
                       "group.id": group})
    try:
        [found] = modern.committed([CTP(topic, 0)], timeout=10)
        assert found.offset == 3
    finally:
        modern.close()


def test_a_message_set_with_a_bad_crc_is_corrupt_message_and_nothing_is_stored(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str],
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    builder = LegacyRecordBatchBuilder(1, 0, 1 << 20)
    for i in range(3):
        builder.append(i, T0 + i, b"k", b"value")
    good = bytes(builder.build())
    bad = bytearray(good)
    bad[-1] ^= 0x01  # the last message's value: its CRC-32 no longer matches
    m = request_types(PRODUCE, 2)
    answers = []
    client = WireClient(kafka_broker.kafka_port)
    try:
        for n, records in enumerate((bytes(bad), good)):
            request = m.ProduceRequest(acks=1, timeout=timedelta(seconds=5), topic_data=(
                m.TopicProduceData(name=topic, partition_data=(
                    m.PartitionProduceData(index=0, records=records),)),))
            client.send(encode_request(request, n))
            _, resp = client.read_response(PRODUCE, 2)
            [partition] = resp.responses[0].partition_responses
            answers.append((partition.error_code, partition.base_offset))
    finally:
        client.close()
    # The bad set stored nothing; the same connection's next, good set starts at 0.
    assert answers == [(ErrorCode.corrupt_message, -1), (ErrorCode.none, 0)]
    stored = consume_confluent(kafka_broker.kafka_port, topic, 1, 3)
    assert [msg.offset for msg in stored] == [0, 1, 2]
