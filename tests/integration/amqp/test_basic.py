"""Basic class: mandatory returns, get, ack/nack/reject, qos, round-robin, cancel."""

from __future__ import annotations

from collections.abc import Callable

import aio_pika
import pika
import pika.exceptions
import pytest

from tests.broker_process import BrokerProcess


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))


def test_mandatory_unroutable_comes_back_as_basic_return(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    returned: list[tuple[int, str, bytes]] = []
    ch.add_on_return_callback(
        lambda _ch, method, _props, body: returned.append((method.reply_code,
                                                            method.reply_text, body)))
    ch.basic_publish("amq.direct", "nobody", b"bounce", mandatory=True)
    ch.basic_publish("amq.direct", "nobody", b"dropped", mandatory=False)
    conn.sleep(0.5)
    assert returned == [(312, "NO_ROUTE", b"bounce")]
    conn.close()


async def test_aio_pika_mandatory_return(amqp_broker: BrokerProcess) -> None:
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}/")
    async with conn:
        ch = await conn.channel(on_return_raises=True)
        with pytest.raises(aio_pika.exceptions.DeliveryError) as info:
            await ch.default_exchange.publish(aio_pika.Message(b"x"), "no-such-queue",
                                              mandatory=True)
        assert info.value.frame.reply_code == 312  # type: ignore[union-attr]


def test_get_and_get_empty_with_message_count(amqp_broker: BrokerProcess,
                                              name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(3):
        ch.basic_publish("", q, b"m%d" % i, pika.BasicProperties(
            content_type="text/plain", headers={"i": i}, message_id=str(i)))
    method, props, body = ch.basic_get(q)
    assert body == b"m0" and method.message_count == 2 and not method.redelivered
    assert props.headers == {"i": 0} and props.message_id == "0"
    assert props.content_type == "text/plain"
    ch.basic_ack(method.delivery_tag)
    assert ch.queue_declare(q, passive=True).method.message_count == 2
    ch.queue_purge(q)
    assert ch.basic_get(q) == (None, None, None)
    conn.close()


def test_large_body_is_split_and_reassembled(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    body = bytes(range(256)) * 2000  # 512 000 bytes: several frames at frame_max 131072
    ch.basic_publish("", q, body)
    _m, _p, got = ch.basic_get(q, auto_ack=True)
    assert got == body
    conn.close()


def test_nack_and_reject_requeue_redeliver_with_flag(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    m1, _, b1 = ch.basic_get(q)
    assert (b1, m1.redelivered) == (b"a", False)
    ch.basic_reject(m1.delivery_tag, requeue=True)
    m2, _, b2 = ch.basic_get(q)
    assert (b2, m2.redelivered) == (b"a", True)
    ch.basic_nack(m2.delivery_tag, requeue=False)  # dropped: no dead-lettering configured
    m3, _, b3 = ch.basic_get(q)
    m4 = ch.basic_get(q)
    assert b3 == b"b" and m4 == (None, None, None)
    ch.basic_nack(m3.delivery_tag, multiple=True, requeue=True)
    m5, _, b5 = ch.basic_get(q, auto_ack=True)
    assert (b5, m5.redelivered) == (b"b", True)
    conn.close()


def test_ack_of_unknown_tag_closes_channel_with_406(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    ch.basic_ack(999)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("", exclusive=True)
    assert info.value.reply_code == 406
    assert conn.is_open and conn.channel().is_open
    conn.close()


def test_prefetch_limits_in_flight_deliveries(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(10):
        ch.basic_publish("", q, b"%d" % i)
    ch.basic_qos(prefetch_count=3)
    delivered: list[int] = []
    ch.basic_consume(q, lambda _c, m, _p, _b: delivered.append(m.delivery_tag))
    conn.sleep(0.5)
    assert len(delivered) == 3  # the rest wait for acks
    assert ch.queue_declare(q, passive=True).method.message_count == 7
    ch.basic_ack(delivered[-1], multiple=True)
    conn.sleep(0.5)
    assert len(delivered) == 6
    conn.close()


def test_global_qos_limits_the_whole_channel(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    for i in range(5):
        ch.basic_publish("", q1, b"%d" % i)
        ch.basic_publish("", q2, b"%d" % i)
    ch.basic_qos(prefetch_count=4, global_qos=True)
    delivered: list[int] = []
    ch.basic_consume(q1, lambda _c, m, _p, _b: delivered.append(m.delivery_tag))
    ch.basic_consume(q2, lambda _c, m, _p, _b: delivered.append(m.delivery_tag))
    conn.sleep(0.5)
    assert len(delivered) == 4
    conn.close()


def test_round_robin_across_consumers(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    seen: dict[str, list[bytes]] = {"a": [], "b": []}
    ch.basic_consume(q, lambda _c, _m, _p, b: seen["a"].append(b), auto_ack=True,
                     consumer_tag="a")
    ch.basic_consume(q, lambda _c, _m, _p, b: seen["b"].append(b), auto_ack=True,
                     consumer_tag="b")
    for i in range(6):
        ch.basic_publish("", q, b"%d" % i)
    conn.sleep(0.5)
    assert seen == {"a": [b"0", b"2", b"4"], "b": [b"1", b"3", b"5"]}
    conn.close()


def test_unacked_messages_are_requeued_when_channel_closes(amqp_broker: BrokerProcess,
                                                          name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    q = name("requeue")
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"keep")
    method, _p, _b = ch.basic_get(q)
    assert not method.redelivered
    ch.close()
    ch2 = conn.channel()
    method, _p, body = ch2.basic_get(q, auto_ack=True)
    assert body == b"keep" and method.redelivered
    ch2.queue_delete(q)
    conn.close()


def test_recover_redelivers_unacked(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"r")
    got: list[tuple[bytes, bool]] = []
    ch.basic_consume(q, lambda _c, m, _p, b: got.append((b, m.redelivered)))
    conn.sleep(0.3)
    ch.basic_recover(requeue=True)
    conn.sleep(0.3)
    assert got == [(b"r", False), (b"r", True)]
    conn.close()


def test_server_cancels_consumer_when_queue_is_deleted(amqp_broker: BrokerProcess,
                                                       name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = name("gone")
    ch.queue_declare(q)
    cancelled: list[str] = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(q, lambda *a: None)
    other = conn.channel()
    assert other.queue_delete(q).method.message_count == 0
    conn.sleep(0.3)
    assert cancelled == [tag]
    assert ch.is_open
    conn.close()


async def test_aio_pika_consume_ack_many(amqp_broker: BrokerProcess) -> None:
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}/")
    async with conn:
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=10)
        queue = await ch.declare_queue(exclusive=True)
        for i in range(200):
            await ch.default_exchange.publish(aio_pika.Message(b"%d" % i), queue.name)
        received: list[bytes] = []
        async with queue.iterator() as it:
            async for message in it:
                received.append(message.body)
                await message.ack()
                if len(received) == 200:
                    break
        assert received == [b"%d" % i for i in range(200)]


def test_exclusive_consumer_is_refused_with_403(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_consume(q, lambda *a: None, exclusive=True)
    ch2 = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch2.basic_consume(q, lambda *a: None)
    assert info.value.reply_code == 403
    conn.close()
