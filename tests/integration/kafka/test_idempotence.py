"""Idempotent producers: ids and epochs, duplicates answered without a second append."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from kafka.record.default_records import DefaultRecordBatchBuilder

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.clients import (
    consume_confluent,
    create_topic,
    messages,
    produce_confluent,
    produce_kafka_python,
)
from tests.integration.kafka.test_wire import produce_request
from tests.integration.kafka.wire_client import WireClient, encode_request, request_types

PRODUCE, INIT_PRODUCER_ID = 0, 22


def idempotent_batch(producer_id: int, epoch: int, sequence: int, values: list[bytes]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=producer_id,
        producer_epoch=epoch, base_sequence=sequence, batch_size=1 << 20,
    )
    for i, value in enumerate(values):
        builder.append(i, timestamp=None, key=None, value=value, headers=[])
    return bytes(builder.build())


def init_producer_id(client: WireClient, correlation_id: int) -> tuple[int, int]:
    m = request_types(INIT_PRODUCER_ID, 4)
    client.send(encode_request(m.InitProducerIdRequest(
        transactional_id=None, transaction_timeout=datetime.timedelta(seconds=60),
        producer_id=-1, producer_epoch=-1,
    ), correlation_id))
    _, resp = client.read_response(INIT_PRODUCER_ID, 4)
    assert resp.error_code == 0
    return resp.producer_id, resp.producer_epoch


def send(client: WireClient, topic: str, batch: bytes, cid: int) -> tuple[int, int]:
    client.send(encode_request(produce_request(topic, batch), cid))
    _, resp = client.read_response(PRODUCE, 9)
    part = resp.responses[0].partition_responses[0]
    return part.error_code, part.base_offset


def test_default_idempotent_clients_produce_without_duplicates(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 2)
    first = messages(100, 2)
    produce_kafka_python(kafka_broker.kafka_port, topic, first)  # idempotent by default in 3.x
    second = [(p, k + b"-c", v, h) for p, k, v, h in messages(100, 2)]
    produce_confluent(kafka_broker.kafka_port, topic, second, **{"enable.idempotence": True})
    got = consume_confluent(kafka_broker.kafka_port, topic, 2, 200)
    assert len(got) == 200
    assert len({(m.partition, m.offset) for m in got}) == 200


def test_retried_batch_gets_its_first_offset_and_is_stored_once(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    client = WireClient(kafka_broker.kafka_port)
    pid, epoch = init_producer_id(client, 1)
    other_pid, _ = init_producer_id(client, 2)
    assert other_pid != pid
    b0 = idempotent_batch(pid, epoch, 0, [b"a", b"b"])
    b1 = idempotent_batch(pid, epoch, 2, [b"c"])
    assert send(client, topic, b0, 3) == (0, 0)
    assert send(client, topic, b1, 4) == (0, 2)
    assert send(client, topic, b0, 5) == (0, 0)  # retry of the first batch
    assert send(client, topic, b1, 6) == (0, 2)
    gap = idempotent_batch(pid, epoch, 7, [b"x"])
    assert send(client, topic, gap, 7)[0] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    new_epoch = idempotent_batch(pid, epoch + 1, 0, [b"d"])
    assert send(client, topic, new_epoch, 8) == (0, 3)
    stale = idempotent_batch(pid, epoch, 3, [b"old"])
    assert send(client, topic, stale, 9)[0] == 47  # INVALID_PRODUCER_EPOCH
    got = consume_confluent(kafka_broker.kafka_port, topic, 1, 4, timeout=5)
    assert [m.value for m in sorted(got, key=lambda m: m.offset)] == [b"a", b"b", b"c", b"d"]
    client.close()


def test_duplicate_detection_survives_a_restart(tmp_path, topic_name) -> None:  # type: ignore[no-untyped-def]
    broker = start_broker(tmp_path / "data")
    topic = topic_name()
    try:
        create_topic(broker.kafka_port, topic, 1)
        client = WireClient(broker.kafka_port)
        pid, epoch = init_producer_id(client, 1)
        batch = idempotent_batch(pid, epoch, 0, [b"once"])
        assert send(client, topic, batch, 2) == (0, 0)
        client.close()
        broker.stop(sig=9)
        broker = start_broker(tmp_path / "data")
        client = WireClient(broker.kafka_port)
        assert send(client, topic, batch, 3) == (0, 0)
        pid2, _ = init_producer_id(client, 4)
        assert pid2 > pid  # ids are never reused across restarts
        client.close()
        got = consume_confluent(broker.kafka_port, topic, 1, 1, timeout=5)
        assert [m.value for m in got] == [b"once"]
    finally:
        broker.stop()
