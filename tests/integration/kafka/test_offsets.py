"""ListOffsets as each client asks it: earliest, latest, by timestamp."""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTP

from tests.broker_process import BrokerProcess
from tests.integration.kafka.clients import bootstrap, create_topic, produce_confluent


def test_watermarks_and_offsets_for_times(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    produce_confluent(
        kafka_broker.kafka_port,
        topic,
        [(0, b"k", b"early-%d" % i, []) for i in range(5)],
        **{"linger.ms": 0},
    )
    time.sleep(0.05)
    middle_ms = int(time.time() * 1000)
    time.sleep(0.05)
    produce_confluent(
        kafka_broker.kafka_port,
        topic,
        [(0, b"k", b"late-%d" % i, []) for i in range(5)],
        **{"linger.ms": 0},
    )
    consumer = Consumer({"bootstrap.servers": bootstrap(kafka_broker.kafka_port), "group.id": "x"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 10)
        found = consumer.offsets_for_times([TopicPartition(topic, 0, middle_ms)], timeout=10)
        assert found[0].offset == 5
        future = consumer.offsets_for_times(
            [TopicPartition(topic, 0, int(time.time() * 1000) + 60_000)], timeout=10
        )
        assert future[0].offset == -1  # nothing that late: end of log
    finally:
        consumer.close()

    kp = KafkaConsumer(bootstrap_servers=bootstrap(kafka_broker.kafka_port))
    try:
        tp = KpTP(topic, 0)
        assert kp.beginning_offsets([tp]) == {tp: 0}
        assert kp.end_offsets([tp]) == {tp: 10}
        answer = kp.offsets_for_times({tp: middle_ms})[tp]
        assert answer.offset == 5 and answer.timestamp >= middle_ms
    finally:
        kp.close()


def test_log_append_time_topic_stamps_broker_time(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap(kafka_broker.kafka_port)})
    producer.produce(topic, b"v", timestamp=1000, partition=0)  # a client time far in the past
    assert producer.flush(10) == 0
    # Assigned partitions, no commits: this reads a timestamp, not a group position.
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap(kafka_broker.kafka_port),
            "group.id": "x",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        msg = None
        deadline = time.monotonic() + 10
        while msg is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
        assert msg is not None and msg.error() is None
        ts_type, ts = msg.timestamp()
        assert ts_type == 2  # TIMESTAMP_LOG_APPEND_TIME
        assert ts >= before
    finally:
        consumer.close()


def test_offsets_for_times_finds_the_exact_record_inside_a_batch(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    from confluent_kafka import Producer

    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    producer = Producer({"bootstrap.servers": bootstrap(kafka_broker.kafka_port),
                         "linger.ms": 200, "compression.type": "lz4"})
    for i in range(10):  # one compressed batch: record i has timestamp (i + 1) * 1000
        producer.produce(topic, b"v%d" % i, timestamp=(i + 1) * 1000, partition=0)
    assert producer.flush(10) == 0
    kp = KafkaConsumer(bootstrap_servers=bootstrap(kafka_broker.kafka_port))
    try:
        tp = KpTP(topic, 0)
        found = kp.offsets_for_times({tp: 4500})[tp]
        assert (found.offset, found.timestamp) == (4, 5000)
        assert kp.offsets_for_times({tp: 11_000})[tp] is None
    finally:
        kp.close()
