"""Transactions with confluent-kafka: commit and abort, read_committed vs read_uncommitted,
fencing, timeouts, and a broker restart in the middle of a transaction."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.clients import bootstrap, create_topic
from tests.integration.kafka.wire_client import WireClient, encode_request, request_types


def txn_producer(port: int, tid: str, **conf: object) -> Producer:
    producer = Producer(
        {"bootstrap.servers": bootstrap(port), "transactional.id": tid, "linger.ms": 5, **conf}
    )
    producer.init_transactions(10)
    return producer


def read_all(
    port: int, topic: str, partitions: int, isolation: str, expect: int, timeout: float = 8.0
) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap(port),
            "group.id": "txn-readers",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(values) < expect:
            for m in consumer.consume(500, 0.3):
                assert m.error() is None, m.error()
                values.append(m.value())
        # Linger briefly: nothing more may arrive than expected.
        for m in consumer.consume(500, 0.5):
            if m.error() is None:
                values.append(m.value())
    finally:
        consumer.close()
    return sorted(values)


def test_committed_and_aborted_transactions_as_each_isolation_level_sees_them(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    create_topic(port, topic, 2)
    producer = txn_producer(port, f"tid-{topic}")
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, b"committed-%d" % i, partition=i % 2)
    producer.commit_transaction(10)
    producer.begin_transaction()
    for i in range(6):
        producer.produce(topic, b"aborted-%d" % i, partition=i % 2)
    producer.flush(10)
    producer.abort_transaction(10)
    producer.begin_transaction()
    producer.produce(topic, b"committed-last", partition=0)
    producer.commit_transaction(10)

    committed = sorted([b"committed-%d" % i for i in range(10)] + [b"committed-last"])
    assert read_all(port, topic, 2, "read_committed", 11) == committed
    everything = sorted(committed + [b"aborted-%d" % i for i in range(6)])
    assert read_all(port, topic, 2, "read_uncommitted", 17) == everything


def test_read_committed_waits_for_an_open_transaction(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    create_topic(port, topic, 1)
    producer = txn_producer(port, f"tid-{topic}")
    producer.begin_transaction()
    producer.produce(topic, b"pending", partition=0)
    producer.flush(10)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap(port),
            "group.id": "g",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    # read_committed asks ListOffsets for the last stable offset: the open record is past it.
    assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5) == (0, 0)
    assert read_all(port, topic, 1, "read_committed", 1, timeout=1.5) == []
    producer.commit_transaction(10)
    assert read_all(port, topic, 1, "read_committed", 1) == [b"pending"]
    consumer.close()


def test_a_second_producer_with_the_same_id_fences_the_first(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    create_topic(port, topic, 1)
    first = txn_producer(port, f"tid-{topic}")
    first.begin_transaction()
    first.produce(topic, b"from-first", partition=0)
    first.flush(10)
    second = txn_producer(port, f"tid-{topic}")  # aborts first's open transaction
    second.begin_transaction()
    second.produce(topic, b"from-second", partition=0)
    second.commit_transaction(10)
    with pytest.raises(KafkaException):
        first.commit_transaction(10)
    assert read_all(port, topic, 1, "read_committed", 1) == [b"from-second"]


def test_transaction_timeout_aborts(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    topic = topic_name()
    create_topic(port, topic, 1)
    producer = txn_producer(port, f"tid-{topic}", **{"transaction.timeout.ms": 1500})
    producer.begin_transaction()
    producer.produce(topic, b"too-slow", partition=0)
    producer.flush(10)
    time.sleep(3.5)
    with pytest.raises(KafkaException):
        producer.commit_transaction(5)
    # The abort marker moved the last stable offset past the record: nothing is stuck.
    assert read_all(port, topic, 1, "read_committed", 0, timeout=1) == []
    assert read_all(port, topic, 1, "read_uncommitted", 1) == [b"too-slow"]


def test_restart_aborts_a_transaction_left_open(tmp_path, topic_name) -> None:  # type: ignore[no-untyped-def]
    broker = start_broker(tmp_path / "data")
    topic = topic_name()
    try:
        create_topic(broker.kafka_port, topic, 1)
        producer = txn_producer(broker.kafka_port, f"tid-{topic}")
        producer.begin_transaction()
        producer.produce(topic, b"done", partition=0)
        producer.commit_transaction(10)
        producer.begin_transaction()
        producer.produce(topic, b"orphan", partition=0)
        producer.flush(10)
        broker.stop(sig=9)
        del producer
        broker = start_broker(tmp_path / "data")
        assert read_all(broker.kafka_port, topic, 1, "read_committed", 1) == [b"done"]
        # A new producer with the same id starts cleanly after the restart.
        again = txn_producer(broker.kafka_port, f"tid-{topic}")
        again.begin_transaction()
        again.produce(topic, b"after", partition=0)
        again.commit_transaction(10)
        assert read_all(broker.kafka_port, topic, 1, "read_committed", 2) == [b"after", b"done"]
    finally:
        broker.stop()


def test_consume_transform_produce_is_exactly_once_across_an_abort(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    port = kafka_broker.kafka_port
    source, sink = topic_name(), topic_name()
    create_topic(port, source, 1)
    create_topic(port, sink, 1)
    feeder = Producer({"bootstrap.servers": bootstrap(port)})
    for i in range(30):
        feeder.produce(source, b"%d" % i, partition=0)
    assert feeder.flush(10) == 0

    group = f"eos-{source}"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap(port),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([source])
    producer = txn_producer(port, f"tid-{source}")
    processed = 0
    aborted_once = False
    deadline = time.monotonic() + 30
    try:
        while processed < 30 and time.monotonic() < deadline:
            batch = consumer.consume(10, 1.0)
            if not batch:
                continue
            producer.begin_transaction()
            for m in batch:
                assert m.error() is None, m.error()
                producer.produce(sink, b"out-" + m.value(), partition=0)
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 10
            )
            if not aborted_once and processed >= 10:
                # A failure mid-stream: abort, rewind to the committed offsets, redo. The
                # flush puts the doomed records in the log (abort alone may drop them).
                producer.flush(10)
                producer.abort_transaction(10)
                aborted_once = True
                committed = consumer.committed(consumer.assignment(), timeout=10)
                for tp in committed:
                    consumer.seek(tp)
                continue
            producer.commit_transaction(10)
            processed += len(batch)
    finally:
        consumer.close()
    assert aborted_once and processed == 30
    expected = sorted(b"out-%d" % i for i in range(30))
    assert read_all(port, sink, 1, "read_committed", 30) == expected
    # The aborted outputs exist in the log, visible only to read_uncommitted readers.
    assert len(read_all(port, sink, 1, "read_uncommitted", 40)) > 30
    checker = Consumer({"bootstrap.servers": bootstrap(port), "group.id": group})
    try:
        done = checker.committed([TopicPartition(source, 0)], timeout=10)
        assert done[0].offset == 30
    finally:
        checker.close()


def test_add_partitions_v4_adds_and_verifies_batched_transactions(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    # v4 is what other brokers send (KIP-890): several transactions, some verify-only.
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 2)
    client = WireClient(kafka_broker.kafka_port)
    try:
        init = request_types(22, 4)
        client.send(encode_request(init.InitProducerIdRequest(
            transactional_id="tx-v4", transaction_timeout=timedelta(seconds=60),
            producer_id=-1, producer_epoch=-1), 1))
        _, ids = client.read_response(22, 4)
        assert ids.error_code == 0
        m = request_types(24, 4)

        def txn(tid: str, epoch: int, verify: bool, partitions: tuple[int, ...]) -> object:
            return m.AddPartitionsToTxnTransaction(
                transactional_id=tid, producer_id=ids.producer_id, producer_epoch=epoch,
                verify_only=verify,
                topics=(m.AddPartitionsToTxnTopic(name=topic, partitions=partitions),))

        client.send(encode_request(m.AddPartitionsToTxnRequest(transactions=(
            txn("tx-v4", ids.producer_epoch, False, (0,)),
            txn("tx-v4", ids.producer_epoch, True, (0, 1)),
            txn("tx-v4", ids.producer_epoch + 1, True, (0,)),
            txn("no-such-tx", 0, True, (0,)),
        )), 2))
        _, resp = client.read_response(24, 4)
    finally:
        client.close()
    assert resp.error_code == 0
    found = [
        [(p.partition_index, p.partition_error_code) for t in r.topic_results
         for p in t.results_by_partition]
        for r in resp.results_by_transaction
    ]
    assert found == [
        [(0, 0)],  # added
        [(0, 0), (1, 48)],  # in the transaction; not in it: INVALID_TXN_STATE
        [(0, 90)],  # another epoch: PRODUCER_FENCED
        [(0, 49)],  # INVALID_PRODUCER_ID_MAPPING
    ]
