"""x-queue-type stream: append-only, consumed from any x-stream-offset (checked against
RabbitMQ 3.10.8 with AMQP_COMPARE_PORT)."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions
import pytest

from tests.broker_process import BrokerProcess


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))


@pytest.fixture
def stream(amqp_broker: BrokerProcess, name: Callable[[str], str]) -> Iterator[str]:
    """A stream holding s0..s4, published with confirms."""
    conn = connect(amqp_broker)
    ch = conn.channel()
    queue = name("stream")
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "stream"})
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("", queue, b"s%d" % i)
    yield queue
    conn.channel().queue_delete(queue)
    conn.close()


def consume(broker: BrokerProcess, queue: str, offset: Any, expect: int,
            publish_after: bytes | None = None) -> list[tuple[bytes, int]]:
    """(body, x-stream-offset header) of the first ``expect`` deliveries."""
    conn = connect(broker)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    got: list[tuple[bytes, int]] = []

    def on_message(channel: Any, method: Any, props: Any, body: bytes) -> None:
        got.append((body, props.headers["x-stream-offset"]))
        channel.basic_ack(method.delivery_tag)

    arguments = {} if offset is None else {"x-stream-offset": offset}
    ch.basic_consume(queue, on_message, arguments=arguments)
    if publish_after is not None:
        conn.process_data_events(0.2)
        conn.channel().basic_publish("", queue, publish_after)
    deadline = time.monotonic() + 3
    while len(got) < expect and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    conn.process_data_events(0.1)
    conn.close()
    return got


def test_consume_from_first_and_acks_advance_nothing(amqp_broker: BrokerProcess,
                                                     stream: str) -> None:
    expected = [(b"s%d" % i, i) for i in range(5)]
    assert consume(amqp_broker, stream, "first", 5) == expected
    assert consume(amqp_broker, stream, "first", 5) == expected


def test_consume_from_an_offset(amqp_broker: BrokerProcess, stream: str) -> None:
    assert consume(amqp_broker, stream, 2, 3) == [(b"s2", 2), (b"s3", 3), (b"s4", 4)]


def test_consume_from_next_sees_only_new_messages(amqp_broker: BrokerProcess,
                                                  stream: str) -> None:
    assert consume(amqp_broker, stream, "next", 1, publish_after=b"new") == [(b"new", 5)]
    assert consume(amqp_broker, stream, None, 1, publish_after=b"newer") == [(b"newer", 6)]


def test_consume_from_last_starts_at_the_end(amqp_broker: BrokerProcess, stream: str) -> None:
    got = consume(amqp_broker, stream, "last", 1)
    assert got and got[-1] == (b"s4", 4)


def test_consume_from_a_timestamp_and_an_interval(amqp_broker: BrokerProcess,
                                                  stream: str) -> None:
    expected = [(b"s%d" % i, i) for i in range(5)]
    assert consume(amqp_broker, stream, "1h", 5) == expected
    an_hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    assert consume(amqp_broker, stream, an_hour_ago, 5) == expected
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    assert consume(amqp_broker, stream, future, 1, publish_after=b"later") == [(b"later", 5)]


def test_stream_consumers_need_a_prefetch_and_manual_acks(amqp_broker: BrokerProcess,
                                                          stream: str) -> None:
    conn = connect(amqp_broker)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        conn.channel().basic_consume(stream, lambda *a: None)
    assert info.value.reply_code == 406
    assert info.value.reply_text == ("PRECONDITION_FAILED - consumer prefetch count is not "
                                     f"set for 'queue '{stream}' in vhost '/''")
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as conn_info:
        ch.basic_consume(stream, lambda *a: None, auto_ack=True)
    assert conn_info.value.reply_code == 540
    assert "automatic acknowledgement not supported by stream queues" in (
        conn_info.value.reply_text)


def test_basic_get_on_a_stream_is_540(amqp_broker: BrokerProcess, stream: str) -> None:
    conn = connect(amqp_broker)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.channel().basic_get(stream)
    assert info.value.reply_code == 540
    assert info.value.reply_text == ("NOT_IMPLEMENTED - basic.get not supported by stream "
                                     f"queues queue '{stream}' in vhost '/'")


def test_prefetch_limits_stream_deliveries_until_acked(amqp_broker: BrokerProcess,
                                                       stream: str) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2)
    tags: list[int] = []
    ch.basic_consume(stream, lambda _c, m, _p, _b: tags.append(m.delivery_tag),
                     arguments={"x-stream-offset": "first"})
    conn.process_data_events(0.3)
    assert len(tags) == 2
    ch.basic_ack(tags[-1], multiple=True)
    conn.process_data_events(0.3)
    assert len(tags) == 4
    conn.close()
