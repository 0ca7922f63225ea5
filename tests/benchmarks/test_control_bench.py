"""Reset through the control API with a typical test's state: 10 topics, 50 queues and
10,000 messages (5,000 Kafka records, 100 AMQP messages in each queue), rebuilt with real
clients before each round. Target (issue 16): < 20 ms.

    .venv/bin/python -m pytest tests/benchmarks/test_control_bench.py --benchmark-enable -q -s

Prints the broker's own time (``took_ms`` of the answer) and the HTTP round trip.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pika
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from portask.testing import Broker

TOPICS = 10
RECORDS_PER_TOPIC = 500
QUEUES = 50
MESSAGES_PER_QUEUE = 100


def _populate(broker: Broker, durable: bool) -> None:
    admin = AdminClient({"bootstrap.servers": broker.kafka_bootstrap})
    names = [f"topic-{i}" for i in range(TOPICS)]
    for future in admin.create_topics([NewTopic(n, 1) for n in names]).values():
        future.result(10)
    producer = Producer({"bootstrap.servers": broker.kafka_bootstrap, "linger.ms": 5})
    for name in names:
        for i in range(RECORDS_PER_TOPIC):
            producer.produce(name, b"x" * 100, key=str(i).encode())
    assert producer.flush(30) == 0
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    channel = connection.channel()
    for q in range(QUEUES):
        queue = f"queue-{q}"
        channel.queue_declare(queue, durable=durable)
        for _ in range(MESSAGES_PER_QUEUE):
            channel.basic_publish("", queue, b"y" * 100)
    connection.close()
    broker.wait_queue(f"queue-{QUEUES - 1}", messages=MESSAGES_PER_QUEUE)


@pytest.mark.parametrize("durable", [False, True], ids=["transient-queues", "durable-queues"])
def test_reset_of_a_typical_test_state(benchmark: Any, tmp_path: Path, durable: bool) -> None:
    took: list[float] = []
    with Broker(tmp_path / "data") as broker:

        def reset() -> None:
            result = broker.reset()
            assert result["topics"] == TOPICS and result["queues"] == QUEUES
            assert result["messages"] == TOPICS * RECORDS_PER_TOPIC + QUEUES * MESSAGES_PER_QUEUE
            took.append(result["took_ms"])

        benchmark.pedantic(reset, setup=lambda: _populate(broker, durable), rounds=7,
                           iterations=1)
    print(f"\nreset ({'durable' if durable else 'transient'} queues): broker took_ms median "
          f"{statistics.median(took):.1f}, min {min(took):.1f}, max {max(took):.1f}")


@pytest.mark.parametrize(("durable", "written"), [(False, False), (True, False), (False, True)],
                         ids=["transient-queues", "durable-queues",
                              "transient-queues-topics-written"])
def test_snapshot_and_restore_of_a_typical_test_state(benchmark: Any, tmp_path: Path,
                                                      durable: bool, written: bool) -> None:
    """Timed: restore (a reset, then the snapshot rebuilt). Printed: snapshot and restore
    as the broker timed them. Topics nobody changed since the snapshot are kept as they
    are; ``written``: a record is produced to every topic before each restore, so all
    10 are rebuilt."""
    taken: list[float] = []
    restored: list[float] = []
    with Broker(tmp_path / "data") as broker:
        _populate(broker, durable)
        for _ in range(7):
            snapshot = broker.snapshot("typical")
            assert snapshot["messages"] == QUEUES * MESSAGES_PER_QUEUE
            assert snapshot["records"] == TOPICS * RECORDS_PER_TOPIC
            taken.append(snapshot["took_ms"])

        producer = Producer({"bootstrap.servers": broker.kafka_bootstrap}) if written else None

        def write_topics() -> None:
            if producer is not None:
                for t in range(TOPICS):
                    producer.produce(f"topic-{t}", b"z")
                assert producer.flush(10) == 0

        def restore() -> None:
            result = broker.restore("typical")
            restored.append(result["took_ms"])

        benchmark.pedantic(restore, setup=write_topics, rounds=7, iterations=1)
        assert len(broker.peek_queue("queue-7", limit=1000)) == MESSAGES_PER_QUEUE
        assert len(broker.peek_topic("topic-3", count=1000)) == RECORDS_PER_TOPIC
    kind = ("durable" if durable else "transient") + (", topics written" if written else "")
    print(f"\nsnapshot ({kind} queues): broker took_ms median {statistics.median(taken):.1f}, "
          f"min {min(taken):.1f}, max {max(taken):.1f}")
    print(f"restore ({kind} queues): broker took_ms median {statistics.median(restored):.1f}, "
          f"min {min(restored):.1f}, max {max(restored):.1f}")
