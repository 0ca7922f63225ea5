"""Every client reads exactly what every client wrote: keys, values, headers, offsets."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.clients import (
    CONSUMERS,
    PRODUCERS,
    consume_confluent,
    create_topic,
    messages,
    produce_confluent,
)

PARTITIONS = 3


def _expected(msgs: list) -> list[tuple]:
    return sorted((p, k, v, tuple((hk, hv) for hk, hv in h)) for p, k, v, h in msgs)


@pytest.mark.parametrize("producer", list(PRODUCERS))
def test_each_client_reads_what_each_client_wrote(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str], producer: str
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, PARTITIONS)
    msgs = messages(150, PARTITIONS)
    acked = PRODUCERS[producer](kafka_broker.kafka_port, topic, msgs)
    # Offsets are real: per partition they run 0, 1, 2, ... in send order.
    for partition in range(PARTITIONS):
        offsets = [o for p, o in acked if p == partition]
        assert offsets == list(range(len(offsets)))
    for consumer, consume in CONSUMERS.items():
        got = consume(kafka_broker.kafka_port, topic, PARTITIONS, len(msgs))
        assert sorted(m.content() for m in got) == _expected(msgs), consumer
        assert sorted((m.partition, m.offset) for m in got) == sorted(acked), consumer


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
@pytest.mark.parametrize("producer", ["confluent", "kafka-python", "aiokafka"])
def test_compressed_batches_pass_through_to_every_client(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str], codec: str, producer: str
) -> None:
    if producer == "aiokafka" and codec == "zstd":
        pytest.importorskip("zstandard")
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    msgs = messages(120, 1, size=300)
    conf = {"compression.type": codec} if producer == "confluent" else {"compression_type": codec}
    PRODUCERS[producer](kafka_broker.kafka_port, topic, msgs, **conf)
    for consumer, consume in CONSUMERS.items():
        got = consume(kafka_broker.kafka_port, topic, 1, len(msgs))
        assert sorted(m.content() for m in got) == _expected(msgs), consumer
        assert [m.offset for m in sorted(got, key=lambda m: m.offset)] == list(range(len(msgs)))


def test_acks_zero_and_acks_all_both_store(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    PRODUCERS["kafka-python"](kafka_broker.kafka_port, topic, messages(50, 1), acks=0)
    produce_confluent(kafka_broker.kafka_port, topic, messages(50, 1), acks="all")
    got = consume_confluent(kafka_broker.kafka_port, topic, 1, 100)
    assert len(got) == 100
    assert sorted(m.offset for m in got) == list(range(100))


def test_auto_created_topic_gets_configured_partitions(tmp_path, topic_name) -> None:  # type: ignore[no-untyped-def]
    broker = start_broker(tmp_path / "data", env={"PORTASK_KAFKA_NUM_PARTITIONS": "4"})
    try:
        from confluent_kafka.admin import AdminClient

        topic = topic_name()
        # kafka-python asks Metadata with allow_auto_topic_creation=True for unknown topics.
        acked = PRODUCERS["kafka-python"](broker.kafka_port, topic, [(None, b"k", b"v", [])])
        assert acked[0][1] == 0
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}"})
        md = admin.list_topics(topic, timeout=10)
        assert len(md.topics[topic].partitions) == 4
        assert md.topics[topic].error is None
    finally:
        broker.stop()


def test_data_survives_restart_and_kill(tmp_path, topic_name) -> None:  # type: ignore[no-untyped-def]
    topic = topic_name()
    broker = start_broker(tmp_path / "data")
    create_topic(broker.kafka_port, topic, 2)
    first = messages(100, 2)
    produce_confluent(broker.kafka_port, topic, first)
    assert broker.stop() == 0
    broker = start_broker(tmp_path / "data")
    second = [(p, k + b"-2", v, h) for p, k, v, h in messages(100, 2)]
    produce_confluent(broker.kafka_port, topic, second)
    broker.stop(sig=9)  # kill -9: acknowledged records must survive it
    broker = start_broker(tmp_path / "data")
    try:
        got = consume_confluent(broker.kafka_port, topic, 2, 200)
        assert sorted(m.content() for m in got) == _expected(first + second)
    finally:
        broker.stop()


def test_topic_compression_type_recompresses_what_producers_send(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    from tests.integration.kafka.test_wire import fetch_request
    from tests.integration.kafka.wire_client import WireClient, encode_request

    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1, {"compression.type": "gzip"})
    msgs = messages(100, 1, size=200)
    produce_confluent(kafka_broker.kafka_port, topic, msgs, **{"compression.type": "lz4"})
    PRODUCERS["kafka-python"](kafka_broker.kafka_port, topic, msgs[:10], compression_type="snappy")
    for consumer, consume in CONSUMERS.items():
        got = consume(kafka_broker.kafka_port, topic, 1, 110)
        assert sorted(m.content() for m in got) == _expected(msgs + msgs[:10]), consumer
    # The stored batches carry codec 1 (gzip) in their attributes, whatever was sent.
    client = WireClient(kafka_broker.kafka_port)
    client.send(encode_request(fetch_request(topic, 0, max_wait_ms=0), 1))
    _, fetched = client.read_response(1, 12)
    data = fetched.responses[0].partitions[0].records
    pos, codecs = 0, set()
    while pos < len(data):
        length = int.from_bytes(data[pos + 8 : pos + 12], "big")
        codecs.add(int.from_bytes(data[pos + 21 : pos + 23], "big") & 7)
        pos += 12 + length
    assert codecs == {1}
    client.close()
