"""Queue arguments behave as on RabbitMQ 3.10 (reply texts captured from RabbitMQ 3.10.8)."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import aio_pika
import pika
import pika.exceptions
import pytest

from tests.broker_process import BrokerProcess

Channel = pika.adapters.blocking_connection.BlockingChannel


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))


def drain(ch: Channel, queue: str) -> list[tuple[bytes, Any]]:
    out = []
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((body, props))


def wait_until(condition: Callable[[], bool], *conns: pika.BlockingConnection,
               timeout: float = 3.0) -> None:
    """Pump the connections until the condition holds (brokers deliver asynchronously)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        for conn in conns:
            conn.process_data_events(0.02)


def dead_letter_queue(ch: Channel, name: Callable[[str], str]) -> tuple[str, str]:
    """A fanout exchange with one queue bound: (exchange, queue)."""
    exchange, queue = name("dlx"), name("dlq")
    ch.exchange_declare(exchange, "fanout", auto_delete=True)
    ch.queue_declare(queue, exclusive=True)
    ch.queue_bind(queue, exchange)
    return exchange, queue


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"arguments": {"x-max-priority": 300}},
     "invalid arg 'x-max-priority' for queue 'Q' in vhost '/': {max_value_exceeded,300}"),
    ({"arguments": {"x-max-priority": -1}},
     "invalid arg 'x-max-priority' for queue 'Q' in vhost '/': {value_negative,-1}"),
    ({"arguments": {"x-max-priority": "5"}},
     "invalid arg 'x-max-priority' for queue 'Q' in vhost '/': \"expected integer, got longstr\""),
    ({"arguments": {"x-message-ttl": -1}},
     "invalid arg 'x-message-ttl' for queue 'Q' in vhost '/': {value_negative,-1}"),
    ({"arguments": {"x-message-ttl": Decimal("1.5")}},
     "invalid arg 'x-message-ttl' for queue 'Q' in vhost '/': \"expected integer, got decimal\""),
    ({"arguments": {"x-expires": 0}},
     "invalid arg 'x-expires' for queue 'Q' in vhost '/': {value_zero,0}"),
    ({"arguments": {"x-overflow": "foo"}},
     "invalid arg 'x-overflow' for queue 'Q' in vhost '/': invalid_overflow"),
    ({"arguments": {"x-overflow": 1}},
     "invalid arg 'x-overflow' for queue 'Q' in vhost '/': {unacceptable_type,signedint}"),
    ({"arguments": {"x-max-length": -1}},
     "invalid arg 'x-max-length' for queue 'Q' in vhost '/': {value_negative,-1}"),
    ({"arguments": {"x-dead-letter-routing-key": "x"}},
     "invalid arg 'x-dead-letter-routing-key' for queue 'Q' in vhost '/': "
     "routing_key_but_no_dlx_defined"),
    ({"arguments": {"x-dead-letter-exchange": 5}},
     "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'Q' in vhost '/'"),
    ({"arguments": {"x-single-active-consumer": 1}},
     "invalid arg 'x-single-active-consumer' for queue 'Q' in vhost '/': "
     "{unacceptable_type,signedint}"),
    ({"arguments": {"x-queue-mode": "foo"}},
     "invalid arg 'x-queue-mode' for queue 'Q' in vhost '/': \"unsupported queue mode 'foo'\""),
    ({"arguments": {"x-queue-type": "foo"}},
     "invalid arg 'x-queue-type' for queue 'Q' in vhost '/': \"unsupported queue type 'foo'\""),
    ({"arguments": {"x-queue-type": "quorum"}},
     "invalid property 'non-durable' for queue 'Q' in vhost '/'"),
    ({"durable": True, "exclusive": True, "arguments": {"x-queue-type": "quorum"}},
     "invalid property 'exclusive-owner' for queue 'Q' in vhost '/'"),
    ({"durable": True, "arguments": {"x-queue-type": "quorum", "x-max-priority": 5}},
     "invalid arg 'x-max-priority' for queue 'Q' in vhost '/' of queue type "
     "rabbit_quorum_queue"),
    ({"arguments": {"x-queue-type": "stream"}},
     "invalid property 'non-durable' for queue 'Q' in vhost '/'"),
    ({"durable": True, "arguments": {"x-queue-type": "stream", "x-max-age": "1x"}},
     "invalid arg 'x-max-age' for queue 'Q' in vhost '/': invalid_max_age"),
    ({"durable": True, "arguments": {"x-queue-type": "stream", "x-message-ttl": 5}},
     "invalid arg 'x-message-ttl' for queue 'Q' in vhost '/' of queue type "
     "rabbit_stream_queue"),
    ({"durable": True, "arguments": {"x-delivery-limit": 5}},
     "invalid arg 'x-delivery-limit' for queue 'Q' in vhost '/' of queue type "
     "rabbit_classic_queue"),
])
def test_bad_arguments_are_refused_with_rabbitmqs_406(
        amqp_broker: BrokerProcess, kwargs: dict[str, Any], text: str) -> None:
    conn = connect(amqp_broker)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        conn.channel().queue_declare("Q", **kwargs)
    assert info.value.reply_code == 406
    assert info.value.reply_text == "PRECONDITION_FAILED - " + text
    assert conn.is_open
    conn.close()


def test_accepted_arguments(amqp_broker: BrokerProcess, name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    for arguments in ({"x-queue-mode": "lazy"}, {"x-foo": 5}, {"x-max-priority": 0},
                      {"x-queue-type": "classic", "x-queue-version": 2}):
        ch.queue_declare(name("ok"), exclusive=True, arguments=arguments)
    ch.queue_declare(name("quorum"), durable=True, arguments={
        "x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish-dlx", "x-delivery-limit": 3})
    conn.close()


def test_redeclare_compares_known_arguments_like_rabbitmq(
        amqp_broker: BrokerProcess, name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = name("eq")
    ch.queue_declare(q, exclusive=True, arguments={"x-max-length": 5, "x-foo": 1})
    ch.queue_declare(q, exclusive=True, arguments={"x-max-length": 5, "x-foo": 2})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(q, exclusive=True, arguments={"x-foo": 1})
    assert info.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost "
        "'/': received none but current is the value '5' of type 'signedint'")
    conn.close()


def test_queue_ttl_dead_letters_with_x_death(amqp_broker: BrokerProcess,
                                             name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    dlx, dlq = dead_letter_queue(ch, name)
    src = name("ttl")
    ch.queue_declare(src, exclusive=True, arguments={
        "x-dead-letter-exchange": dlx, "x-message-ttl": 100})
    ch.basic_publish("", src, b"hello", pika.BasicProperties(
        headers={"a": 1}, expiration="50000", delivery_mode=2))
    conn.sleep(0.5)
    assert ch.queue_declare(src, passive=True).method.message_count == 0
    [(body, props)] = drain(ch, dlq)
    assert body == b"hello"
    assert props.expiration is None and props.delivery_mode == 2
    headers = props.headers
    [death] = headers["x-death"]
    assert death["count"] == 1 and death["reason"] == "expired"
    assert death["queue"] == src and death["exchange"] == ""
    assert death["routing-keys"] == [src]
    assert death["original-expiration"] == "50000"
    assert isinstance(death["time"], datetime.datetime)
    assert headers["a"] == 1
    assert headers["x-first-death-reason"] == "expired"
    assert headers["x-first-death-queue"] == src
    assert headers["x-first-death-exchange"] == ""
    conn.close()


def test_per_message_expiration_expires_only_at_the_head(
        amqp_broker: BrokerProcess, name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = name("exp")
    ch.queue_declare(q, exclusive=True)
    ch.basic_publish("", q, b"long", pika.BasicProperties(expiration="60000"))
    ch.basic_publish("", q, b"short", pika.BasicProperties(expiration="50"))
    conn.sleep(0.3)
    # As in RabbitMQ, the expired message waits behind one that has not expired yet.
    assert ch.queue_declare(q, passive=True).method.message_count == 2
    assert ch.basic_get(q, auto_ack=True)[2] == b"long"
    assert ch.basic_get(q, auto_ack=True) == (None, None, None)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_publish("", q, b"x", pika.BasicProperties(expiration="abc"))
        ch.queue_declare(q, passive=True)
    assert info.value.reply_text == "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"
    conn.close()


def test_zero_ttl_delivers_to_a_waiting_consumer_or_drops(
        amqp_broker: BrokerProcess, name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = name("ttl0")
    ch.queue_declare(q, exclusive=True, arguments={"x-message-ttl": 0})
    ch.basic_publish("", q, b"nobody-waiting")
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    got: list[bytes] = []
    ch.basic_consume(q, lambda _c, _m, _p, body: got.append(body), auto_ack=True)
    ch.basic_publish("", q, b"taken")
    conn.process_data_events(0.3)
    assert got == [b"taken"]
    conn.close()


def test_x_expires_deletes_an_unused_queue(amqp_broker: BrokerProcess,
                                           name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = name("exp-q")
    ch.queue_declare(q, arguments={"x-expires": 300})
    conn.sleep(0.15)
    ch.queue_declare(q, arguments={"x-expires": 300})  # a redeclare counts as use
    conn.sleep(0.2)
    ch.queue_declare(q, passive=True)
    conn.sleep(0.6)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(q, passive=True)
    assert info.value.reply_code == 404
    conn.close()


def test_max_length_drop_head_dead_letters_the_oldest(
        amqp_broker: BrokerProcess, name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    dlx, dlq = dead_letter_queue(ch, name)
    q = name("maxlen")
    ch.queue_declare(q, exclusive=True, arguments={"x-max-length": 3,
                                                    "x-dead-letter-exchange": dlx})
    for i in range(5):
        ch.basic_publish("", q, b"%d" % i)
    assert [b for b, _ in drain(ch, q)] == [b"2", b"3", b"4"]
    dropped = drain(ch, dlq)
    assert [b for b, _ in dropped] == [b"0", b"1"]
    assert dropped[0][1].headers["x-death"][0]["reason"] == "maxlen"
    conn.close()


def test_max_length_bytes_drop_head(amqp_broker: BrokerProcess,
                                    name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = name("maxbytes")
    ch.queue_declare(q, exclusive=True, arguments={"x-max-length-bytes": 25})
    for i in range(5):
        ch.basic_publish("", q, b"%d" % i * 10)
    assert [b for b, _ in drain(ch, q)] == [b"3" * 10, b"4" * 10]
    conn.close()


def test_reject_publish_nacks_confirming_publishers(
        amqp_broker: BrokerProcess, name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    dlx, dlq = dead_letter_queue(ch, name)
    plain, with_dlx = name("rp"), name("rpdlx")
    ch.queue_declare(plain, exclusive=True, arguments={"x-max-length": 2,
                                                        "x-overflow": "reject-publish"})
    ch.queue_declare(with_dlx, exclusive=True, arguments={
        "x-max-length": 1, "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": dlx})
    ch.confirm_delivery()
    ch.basic_publish("", plain, b"0")
    ch.basic_publish("", plain, b"1")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", plain, b"2")
    ch.basic_publish("", with_dlx, b"kept")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", with_dlx, b"refused")
    assert [b for b, _ in drain(ch, plain)] == [b"0", b"1"]
    ch.basic_publish("", plain, b"room-again")
    assert [b for b, _ in drain(ch, dlq)] == [b"refused"]
    conn.close()


def test_rejected_messages_dead_letter_with_routing_key_and_counted_deaths(
        amqp_broker: BrokerProcess, name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    dlx = name("dlx-direct")
    ch.exchange_declare(dlx, "direct", auto_delete=True)
    src, dlq = name("src"), name("dlq")
    ch.queue_declare(dlq, exclusive=True)
    ch.queue_bind(dlq, dlx, "retry")
    ch.queue_declare(src, exclusive=True, arguments={
        "x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "retry"})
    ch.basic_publish("", src, b"job")
    for _ in range(2):
        method, _props, _body = ch.basic_get(src)
        ch.basic_reject(method.delivery_tag, requeue=False)
        conn.sleep(0.05)
        method, props, body = ch.basic_get(dlq, auto_ack=True)
        assert method.routing_key == "retry" and method.exchange == dlx
        ch.basic_publish("", src, body, props)  # back to the source, x-death and all
    [death] = props.headers["x-death"]
    assert death["count"] == 2 and death["reason"] == "rejected"
    assert death["routing-keys"] == [src]
    conn.close()


def test_fully_automatic_dead_letter_cycle_is_dropped(
        amqp_broker: BrokerProcess, name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = name("cycle")
    ch.queue_declare(q, exclusive=True, arguments={"x-dead-letter-exchange": "",
                                                    "x-message-ttl": 50})
    ch.basic_publish("", q, b"x")
    conn.sleep(0.4)
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    conn.close()


def test_priority_queue_serves_highest_first(amqp_broker: BrokerProcess,
                                             name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = name("prio")
    ch.queue_declare(q, exclusive=True, arguments={"x-max-priority": 5})
    for i, priority in enumerate([1, 5, 9, 0, None, 3, 5]):
        ch.basic_publish("", q, b"%d" % i, pika.BasicProperties(priority=priority))
    # The order RabbitMQ 3.10 gives for the same publishes.
    assert [b for b, _ in drain(ch, q)] == [b"1", b"2", b"6", b"5", b"0", b"3", b"4"]
    conn.close()


def test_single_active_consumer_gets_everything_until_it_leaves(
        amqp_broker: BrokerProcess, name: Callable[[str], str]) -> None:
    conn, conn1, conn2 = (connect(amqp_broker) for _ in range(3))
    ch = conn.channel()
    q = name("sac")
    ch.queue_declare(q, arguments={"x-single-active-consumer": True})
    first: list[bytes] = []
    second: list[bytes] = []
    ch1, ch2 = conn1.channel(), conn2.channel()
    tag = ch1.basic_consume(q, lambda _c, _m, _p, body: first.append(body), auto_ack=True)
    ch2.basic_consume(q, lambda _c, _m, _p, body: second.append(body), auto_ack=True)
    for i in range(6):
        ch.basic_publish("", q, b"%d" % i)
    wait_until(lambda: len(first) + len(second) == 6, conn1, conn2)
    ch1.basic_cancel(tag)
    ch.basic_publish("", q, b"after")
    wait_until(lambda: len(first) + len(second) == 7, conn1, conn2)
    ch.queue_delete(q)
    assert first == [b"%d" % i for i in range(6)]
    assert second == [b"after"]
    for c in (conn, conn1, conn2):
        c.close()


def test_consumer_priority_prefers_the_higher_consumer(
        amqp_broker: BrokerProcess, name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = name("cprio")
    ch.queue_declare(q, exclusive=True)
    low: list[bytes] = []
    high: list[bytes] = []
    ch.basic_consume(q, lambda _c, _m, _p, body: low.append(body), auto_ack=True)
    ch.basic_consume(q, lambda _c, _m, _p, body: high.append(body), auto_ack=True,
                     arguments={"x-priority": 10})
    for i in range(5):
        ch.basic_publish("", q, b"%d" % i)
    wait_until(lambda: len(high) + len(low) == 5, conn)
    assert len(high) == 5 and not low
    conn.close()


def test_quorum_queue_delivery_limit_and_delivery_count(
        amqp_broker: BrokerProcess, name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    dlx, dlq = dead_letter_queue(ch, name)
    q = name("quorum")
    ch.queue_declare(q, durable=True, arguments={
        "x-queue-type": "quorum", "x-delivery-limit": 1, "x-dead-letter-exchange": dlx})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"poison")
    method, props, _ = ch.basic_get(q)
    assert not method.redelivered and not (props.headers or {}).get("x-delivery-count")
    ch.basic_nack(method.delivery_tag, requeue=True)
    method = None
    wait_until(lambda: ch.queue_declare(q, passive=True).method.message_count == 1, conn)
    method, props, _ = ch.basic_get(q)
    assert method.redelivered and props.headers["x-delivery-count"] == 1
    ch.basic_nack(method.delivery_tag, requeue=True)  # the second return passes the limit
    wait_until(lambda: ch.queue_declare(dlq, passive=True).method.message_count == 1, conn)
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    [(body, props)] = drain(ch, dlq)
    assert body == b"poison"
    assert props.headers["x-death"][0]["reason"] == "delivery_limit"
    ch.queue_delete(q)
    conn.close()


async def test_aio_pika_ttl_dead_letter_topology(amqp_broker: BrokerProcess,
                                                 name: Callable[[str], str]) -> None:
    """kombu-style delayed delivery: a TTL queue without consumers dead-letters on time."""
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}/")
    async with conn:
        ch = await conn.channel()
        target = await ch.declare_queue(name("target"), exclusive=True)
        delay = await ch.declare_queue(name("delay"), exclusive=True, arguments={
            "x-message-ttl": 200, "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": target.name})
        started = time.monotonic()
        await ch.default_exchange.publish(aio_pika.Message(b"later"), delay.name)
        async with target.iterator() as messages:
            async for message in messages:
                async with message.process():
                    assert message.body == b"later"
                    assert message.headers["x-death"][0]["reason"] == "expired"
                break
        assert 0.15 < time.monotonic() - started < 2.0
