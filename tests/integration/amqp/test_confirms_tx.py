"""Publisher confirms and transactions."""

from __future__ import annotations

import aio_pika
import pika
import pika.exceptions
import pytest

from tests.broker_process import BrokerProcess


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))


def test_pika_confirms_every_publish(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    ch.confirm_delivery()
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(100):
        ch.basic_publish("", q, b"%d" % i)  # raises unless the broker acks it
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("amq.direct", "nowhere", b"x", mandatory=True)
    assert ch.queue_declare(q, passive=True).method.message_count == 100
    conn.close()


async def test_aio_pika_confirms_arrive_for_every_publish(amqp_broker: BrokerProcess) -> None:
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}/")
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        queue = await ch.declare_queue(exclusive=True)
        import asyncio

        confirmations = await asyncio.gather(*(
            ch.default_exchange.publish(aio_pika.Message(b"%d" % i), queue.name)
            for i in range(500)
        ))
        assert len(confirmations) == 500
        assert all(type(c).__name__ == "Ack" for c in confirmations)
        declared = await ch.declare_queue(queue.name, passive=True)
        assert declared.declaration_result.message_count == 500


def test_tx_commit_and_rollback(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.tx_select()
    ch.basic_publish("", q, b"rolled-back")
    ch.tx_rollback()
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    ch.basic_publish("", q, b"one")
    ch.basic_publish("", q, b"two")
    assert ch.queue_declare(q, passive=True).method.message_count == 0  # not yet committed
    ch.tx_commit()
    assert ch.queue_declare(q, passive=True).method.message_count == 2
    # Acks are transactional too: a rolled-back ack leaves the message unacked.
    method, _p, _b = ch.basic_get(q)
    ch.basic_ack(method.delivery_tag)
    ch.tx_rollback()
    ch.basic_ack(method.delivery_tag)
    ch.tx_commit()
    assert ch.queue_declare(q, passive=True).method.message_count == 1
    conn.close()


def test_confirm_then_tx_on_one_channel_is_406(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.tx_select()
    assert info.value.reply_code == 406
    ch2 = conn.channel()
    ch2.tx_select()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch2.confirm_delivery()
    assert info.value.reply_code == 406
    assert conn.is_open
    conn.close()
