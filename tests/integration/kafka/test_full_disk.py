"""Issue 9, item 7 (Kafka): a full disk answers KAFKA_STORAGE_ERROR, keeps serving reads
and takes produces again once space returns, without a restart.

The disk is real: the broker's data directory is a small tmpfs the test mounts
(tests/small_filesystem.py), so ENOSPC comes from the kernel, short writes included,
wherever the broker writes (segment data, index, checkpoints, segment rolls). Mounting
needs root; CI runs as root, elsewhere the test is skipped and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests.broker_process import start_broker
from tests.integration.kafka.clients import bootstrap, create_topic
from tests.small_filesystem import fill, mounted_tmpfs

VALUE_SIZE = 4000


def _value(i: int) -> bytes:
    return (b"%08d" % i) * (VALUE_SIZE // 8)


def _produce(port: int, topic: str, first: int, count: int, retries: int
             ) -> tuple[dict[int, int], list[KafkaError]]:
    """Send values first..first+count-1; returns {value index: offset} acked and the errors."""
    acked: dict[int, int] = {}
    errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": bootstrap(port), "acks": "all",
                         "linger.ms": 2, "retries": retries})

    def report(i: int):  # type: ignore[no-untyped-def]
        def on_delivery(err: KafkaError | None, msg: object) -> None:
            if err is None:
                acked[i] = msg.offset()  # type: ignore[attr-defined]
            else:
                errors.append(err)
        return on_delivery

    for i in range(first, first + count):
        producer.produce(topic, _value(i), partition=0, on_delivery=report(i))
        producer.poll(0)
    assert producer.flush(30) == 0
    return acked, errors


def _consume_all(port: int, topic: str, expected: int) -> dict[int, bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap(port), "group.id": "full-disk",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: dict[int, bytes] = {}
    deadline = time.monotonic() + 20
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for m in consumer.consume(500, 0.5):
                assert m.error() is None, m.error()
                got[m.offset()] = m.value()
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert (low, high) == (0, expected)
    finally:
        consumer.close()
    return got


def test_full_disk_gets_storage_error_keeps_reads_and_recovers_when_space_returns(
    tmp_path: Path, topic_name: Callable[[], str]
) -> None:
    with mounted_tmpfs(tmp_path / "disk", size=8 << 20) as disk:
        ballast = disk / "ballast"  # what the "operator" deletes to free space
        ballast.write_bytes(b"\xbb" * (2 << 20))
        # The data directory is the mount itself, so the broker's stderr file (written
        # beside the data directory) stays on the real disk.
        broker = start_broker(disk, "--set", "amqp.disk_free_limit_bytes=0")
        try:
            port = broker.kafka_port
            topic = topic_name()
            create_topic(port, topic, 1, {"segment.bytes": str(1 << 20)})

            # Fill the disk: no retries, so a refused batch reports the broker's own code.
            acked: dict[int, int] = {}
            errors: list[KafkaError] = []
            sent = 0
            while not errors and sent < 20_000:
                more, errors = _produce(port, topic, sent, 200, retries=0)
                acked.update(more)
                sent += 200
            assert errors, "the disk never filled"
            assert {e.code() for e in errors} == {KafkaError.KAFKA_STORAGE_ERROR}
            stored = len(acked)
            assert stored > 500  # several 1 MiB segments were written and rolled
            # Offsets are dense: nothing torn, nothing skipped, no gap after a failure.
            assert sorted(acked.values()) == list(range(stored))

            # The pages a smaller batch could still use go too: every append fails now.
            fill(disk / "crumbs")
            refused, errors = _produce(port, topic, sent, 20, retries=0)
            assert not refused and len(errors) == 20
            assert {e.code() for e in errors} == {KafkaError.KAFKA_STORAGE_ERROR}
            # Reads go on: everything acknowledged, nothing else.
            got = _consume_all(port, topic, stored)
            assert got == {offset: _value(i) for i, offset in acked.items()}

            # A producer with retries treats the error as retriable: it keeps retrying
            # while the disk is full and its messages land once space returns, on the
            # same broker, at the next offsets.
            later: dict[int, int] = {}
            failed: list[KafkaError] = []
            producer = Producer({"bootstrap.servers": bootstrap(port), "acks": "all",
                                 "linger.ms": 2, "message.timeout.ms": 30_000})
            for n in range(50):
                def on_delivery(err: KafkaError | None, msg: object, n: int = n) -> None:
                    if err is None:
                        later[n] = msg.offset()  # type: ignore[attr-defined]
                    else:
                        failed.append(err)
                producer.produce(topic, _value(100_000 + n), partition=0,
                                 on_delivery=on_delivery)
            retrying_until = time.monotonic() + 2
            while time.monotonic() < retrying_until:
                producer.poll(0.1)
            assert not later and not failed  # still retrying
            ballast.unlink()
            (disk / "crumbs").unlink()
            assert producer.flush(30) == 0
            assert not failed
            assert [later[n] for n in range(50)] == list(range(stored, stored + 50))
            got = _consume_all(port, topic, stored + 50)
            assert [got[stored + n] for n in range(50)] == [_value(100_000 + n) for n in range(50)]

            assert broker.proc.poll() is None
            log = broker.stderr_text()
            assert "Traceback" not in log
            assert log.count("partition write failed; appends are refused") == 1
            assert "partition writes again" in log
        finally:
            broker.stop()
