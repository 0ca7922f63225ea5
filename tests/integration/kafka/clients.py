"""Thin produce/consume helpers over the three real client libraries the tests use."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTP
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTP


@dataclass(frozen=True)
class Msg:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def content(self) -> tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]:
        return self.partition, self.key, self.value, self.headers


def bootstrap(port: int) -> str:
    return f"127.0.0.1:{port}"


def create_topic(
    port: int, name: str, partitions: int = 3, config: dict[str, str] | None = None
) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap(port)})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
    )
    futures[name].result(10)


def messages(
    n: int, partitions: int, size: int = 100
) -> list[tuple[int, bytes, bytes, list[tuple[str, bytes]]]]:
    return [
        (
            i % partitions,
            f"key-{i}".encode(),
            (f"value-{i}-".encode() * size)[:size] + str(i).encode(),
            [("idx", str(i).encode()), ("src", b"test")],
        )
        for i in range(n)
    ]


# -- producers: each returns the (partition, offset) acknowledged for every message --


def produce_confluent(port: int, topic: str, msgs: list, **conf: object) -> list[tuple[int, int]]:
    producer = Producer({"bootstrap.servers": bootstrap(port), "linger.ms": 5, **conf})
    acked: list[tuple[int, int]] = [(-1, -1)] * len(msgs)
    errors = []

    def on_delivery(i: int):  # type: ignore[no-untyped-def]
        def cb(err, msg) -> None:  # type: ignore[no-untyped-def]
            if err is not None:
                errors.append(err)
            else:
                acked[i] = (msg.partition(), msg.offset())

        return cb

    for i, (partition, key, value, headers) in enumerate(msgs):
        producer.produce(
            topic,
            value=value,
            key=key,
            headers=headers,
            partition=partition,
            on_delivery=on_delivery(i),
        )
        producer.poll(0)
    assert producer.flush(20) == 0
    assert not errors, errors
    return acked


def produce_kafka_python(
    port: int, topic: str, msgs: list, **conf: object
) -> list[tuple[int, int]]:
    producer = KafkaProducer(bootstrap_servers=bootstrap(port), linger_ms=5, **conf)
    futures = [
        producer.send(topic, value=value, key=key, headers=headers, partition=partition)
        for partition, key, value, headers in msgs
    ]
    producer.flush(20)
    acked = []
    for f in futures:
        md = f.get(10)
        acked.append((md.partition, md.offset))
    producer.close(5)
    return acked


def produce_aiokafka(port: int, topic: str, msgs: list, **conf: object) -> list[tuple[int, int]]:
    async def run() -> list[tuple[int, int]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap(port), linger_ms=5, **conf)
        await producer.start()
        try:
            futures = [
                await producer.send(
                    topic, value=value, key=key, headers=headers, partition=partition
                )
                for partition, key, value, headers in msgs
            ]
            out = []
            for f in futures:
                md = await f
                out.append((md.partition, md.offset))
            return out
        finally:
            await producer.stop()

    return asyncio.run(run())


# -- consumers: read partitions 0..n-1 from the beginning until `count` messages arrive --


def consume_confluent(
    port: int, topic: str, partitions: int, count: int, timeout: float = 20
) -> list[Msg]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap(port),
            "group.id": "unused-no-commits",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[Msg] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                assert m.error() is None, m.error()
                out.append(
                    Msg(
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.value(),
                        tuple((k, v) for k, v in (m.headers() or [])),
                    )
                )
    finally:
        consumer.close()
    return out


def kafka_python_member(port: int, topic: str, **conf: Any) -> KafkaConsumer:
    """A kafka-python group member, subscribed once its metadata holds the topic.

    kafka-python joins without waiting for its subscription's first metadata; a leader
    that assigns before that arrives assigns nothing ("No partition metadata for
    topic") and the group rebalances again when it does (seen in CI, a topic made a
    moment before). Real Kafka leaves the same race to the client."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap(port), **conf)
    consumer.partitions_for_topic(topic)  # fetches the metadata when it lacks the topic
    consumer.subscribe([topic])
    return consumer


def consume_kafka_python(
    port: int, topic: str, partitions: int, count: int, timeout: float = 20
) -> list[Msg]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap(port), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    consumer.assign([KpTP(topic, p) for p in range(partitions)])
    consumer.seek_to_beginning()
    out: list[Msg] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for m in records:
                    out.append(
                        Msg(
                            m.partition,
                            m.offset,
                            m.key,
                            m.value,
                            tuple((k, v) for k, v in m.headers),
                        )
                    )
    finally:
        consumer.close()
    return out


def consume_aiokafka(
    port: int, topic: str, partitions: int, count: int, timeout: float = 20
) -> list[Msg]:
    async def run() -> list[Msg]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap(port),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        out: list[Msg] = []
        try:
            consumer.assign([AioTP(topic, p) for p in range(partitions)])
            await consumer.seek_to_beginning()
            deadline = time.monotonic() + timeout
            while len(out) < count and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for m in records:
                        out.append(
                            Msg(
                                m.partition,
                                m.offset,
                                m.key,
                                m.value,
                                tuple((k, v) for k, v in m.headers),
                            )
                        )
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


PRODUCERS = {
    "confluent": produce_confluent,
    "kafka-python": produce_kafka_python,
    "aiokafka": produce_aiokafka,
}
CONSUMERS = {
    "confluent": consume_confluent,
    "kafka-python": consume_kafka_python,
    "aiokafka": consume_aiokafka,
}
