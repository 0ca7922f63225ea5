"""cleanup.policy=compact: the latest record per key survives, keyless records are refused."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer

from tests.broker_process import start_broker
from tests.integration.kafka.clients import (
    bootstrap,
    consume_confluent,
    consume_kafka_python,
    create_topic,
)


def test_compacted_topic_keeps_the_last_value_per_key(
    tmp_path: Path, topic_name: Callable[[], str]
) -> None:
    broker = start_broker(tmp_path / "data", env={"PORTASK_STORAGE_RETENTION_CHECK_MS": "300"})
    topic = topic_name()
    try:
        port = broker.kafka_port
        create_topic(port, topic, 1, {"cleanup.policy": "compact", "segment.bytes": "4096"})
        producer = Producer({"bootstrap.servers": bootstrap(port), "linger.ms": 0})
        expected_offsets = {}
        offsets: list[int] = []
        for i in range(100):
            key = b"k%d" % (i % 5)
            value = None if (i % 5 == 4 and i >= 95) else b"%s-v%03d-" % (key, i) + b"x" * 150
            producer.produce(
                topic,
                value,
                key=key,
                partition=0,
                on_delivery=lambda err, msg: offsets.append(msg.offset()),
            )
            producer.flush(5)
            expected_offsets[key] = i
        # Filler under another key pushes every k* record into closed segments.
        for _ in range(40):
            producer.produce(topic, b"f" * 150, key=b"filler", partition=0)
            producer.flush(5)
        assert offsets == list(range(100))

        # Compaction runs every retention check (300 ms here). A pass may run while the
        # records are still being produced and compact only the segments closed by then,
        # so wait until two reads 0.7 s apart (a pass or two between them) agree.
        deadline = time.monotonic() + 15
        got = consume_kafka_python(port, topic, 1, 140, timeout=2)
        while time.monotonic() < deadline:
            time.sleep(0.7)
            again = consume_kafka_python(port, topic, 1, 140, timeout=2)
            settled = len(again) < 140 and [m.offset for m in again] == [m.offset for m in got]
            got = again
            if settled:
                break
        by_key: dict[bytes, list[tuple[int, bytes | None]]] = {}
        for m in got:
            by_key.setdefault(m.key, []).append((m.offset, m.value))
        for n in range(4):
            key = b"k%d" % n
            offset = expected_offsets[key]
            assert by_key[key] == [(offset, b"%s-v%03d-" % (key, offset) + b"x" * 150)]
        # The tombstone for k4 is younger than delete.retention.ms: it stays, alone.
        assert by_key[b"k4"] == [(99, None)]
        assert len(got) < 60
        # confluent-kafka reads the compacted log too, empty batches and gaps included.
        assert sorted(m.offset for m in consume_confluent(port, topic, 1, len(got))) == sorted(
            m.offset for m in got
        )
    finally:
        broker.stop()


def test_keyless_record_on_compacted_topic_is_refused(
    kafka_broker,
    topic_name: Callable[[], str],  # type: ignore[no-untyped-def]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1, {"cleanup.policy": "compact"})
    producer = Producer(
        {"bootstrap.servers": bootstrap(kafka_broker.kafka_port), "message.send.max.retries": 0}
    )
    errors = []
    producer.produce(topic, b"no key", partition=0, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    assert errors and errors[0] is not None
    assert errors[0].name() == "INVALID_RECORD"
