"""Where requeued messages go, as RabbitMQ 3.10 puts them (these tests run against it too).

Classic and priority queues: back to their original place, whatever order the nacks,
rejects, recovers and channel closes arrive in. Quorum queues: a message the client
returns (nack, reject, basic.recover) goes to the back of the queue, in the order
returned; what a closing channel held goes back to the front, in the original order.

Not yet in Portask: the quorum queue's back-of-the-queue returns. Portask puts a quorum
queue's returned messages in their original place, as for classic queues; the tests say
so where they expect it (``_rabbitmq_quorum``).
"""

from __future__ import annotations

from collections.abc import Callable

import aio_pika
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.broker_process import BrokerProcess

KINDS = {
    "classic": {},
    "classic-durable": {"durable": True},
    "priority": {"arguments": {"x-max-priority": 5}},
    "quorum": {"durable": True, "arguments": {"x-queue-type": "quorum"}},
}


def _rabbitmq_quorum(broker: BrokerProcess, kind: str) -> bool:
    """Returns go to the back of the queue: RabbitMQ's quorum queues (not yet Portask's)."""
    return kind == "quorum" and broker.kind == "rabbitmq"


def _connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))


def _declare(ch: BlockingChannel, name: str, kind: str) -> None:
    """Declare and turn confirms on: a quorum queue takes a publish asynchronously, and a
    basic.get right after an unconfirmed publish may find it not there yet."""
    ch.confirm_delivery()
    spec = KINDS[kind]
    ch.queue_declare(name, durable=spec.get("durable", False),
                     arguments=spec.get("arguments"))


def _drain(ch: BlockingChannel, queue: str) -> list[tuple[bytes, bool]]:
    out = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((body, method.redelivered))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("how", ["nack", "reject", "nack-multiple-then-single"])
def test_requeues_in_any_order_restore_the_enqueue_order(
    amqp_broker: BrokerProcess, name: Callable[[str], str], kind: str, how: str,
) -> None:
    conn = _connect(amqp_broker)
    ch = conn.channel()
    queue = name("rq")
    _declare(ch, queue, kind)
    bodies = [f"m{i}".encode() for i in range(6)]
    for body in bodies:
        ch.basic_publish("", queue, body)
    tags = [ch.basic_get(queue)[0].delivery_tag for _ in bodies]
    # The first one acked, the rest returned in a scrambled order.
    ch.basic_ack(tags[0])
    order = [4, 2, 5, 1, 3]
    if how == "nack-multiple-then-single":
        ch.basic_nack(tags[5], requeue=True)
        ch.basic_nack(tags[2], multiple=True, requeue=True)  # 1 and 2
        ch.basic_nack(tags[4], requeue=True)
        ch.basic_nack(tags[3], requeue=True)
    else:
        for i in order:
            if how == "nack":
                ch.basic_nack(tags[i], requeue=True)
            else:
                ch.basic_reject(tags[i], requeue=True)
    if _rabbitmq_quorum(amqp_broker, kind):
        returned = {"nack-multiple-then-single": [5, 1, 2, 4, 3]}.get(how, order)
        assert _drain(ch, queue) == [(bodies[i], True) for i in returned]
    else:
        assert _drain(ch, queue) == [(b, True) for b in bodies[1:]]
    ch.queue_delete(queue)
    conn.close()


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_closed_channel_returns_its_unacked_before_the_ready_ones(
    amqp_broker: BrokerProcess, name: Callable[[str], str], kind: str,
) -> None:
    conn = _connect(amqp_broker)
    setup = conn.channel()
    queue = name("rq")
    _declare(setup, queue, kind)
    for i in range(6):
        setup.basic_publish("", queue, f"m{i}".encode())
    taker = conn.channel()
    tags = [taker.basic_get(queue)[0].delivery_tag for _ in range(4)]
    taker.basic_nack(tags[1], requeue=True)  # m1 back first, then the channel closes
    taker.close()  # m0, m2, m3 come back too
    if _rabbitmq_quorum(amqp_broker, kind):  # m1 was returned by the client: to the back
        assert _drain(setup, queue) == [(b"m0", True), (b"m2", True), (b"m3", True),
                                        (b"m4", False), (b"m5", False), (b"m1", True)]
    else:
        assert _drain(setup, queue) == [(b"m0", True), (b"m1", True), (b"m2", True),
                                        (b"m3", True), (b"m4", False), (b"m5", False)]
    setup.queue_delete(queue)
    conn.close()


@pytest.mark.parametrize("kind", list(KINDS))
def test_recover_requeues_in_place_or_at_the_back(
    amqp_broker: BrokerProcess, name: Callable[[str], str], kind: str,
) -> None:
    conn = _connect(amqp_broker)
    setup = conn.channel()
    queue = name("rq")
    _declare(setup, queue, kind)
    for i in range(6):
        setup.basic_publish("", queue, f"m{i}".encode())
    taker = conn.channel()
    for _ in range(4):
        taker.basic_get(queue)
    taker.basic_recover(requeue=True)
    recovered = [(f"m{i}".encode(), True) for i in range(4)]
    ready = [(b"m4", False), (b"m5", False)]
    expected = ready + recovered if _rabbitmq_quorum(amqp_broker, kind) else recovered + ready
    assert _drain(setup, queue) == expected
    setup.queue_delete(queue)
    conn.close()


async def test_leaving_an_aio_pika_iterator_keeps_the_order(
    amqp_broker: BrokerProcess, name: Callable[[str], str],
) -> None:
    """The case from the issue: consume the first of five with queue.iterator(), ack it,
    leave the iterator (it cancels and nacks the rest one by one), then get the rest."""
    url = f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}/"
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name("it"))
        for i in range(5):
            await channel.default_exchange.publish(aio_pika.Message(f"m{i}".encode()),
                                                   routing_key=queue.name)
        async with queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                break
        got = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            got.append((message.body, message.redelivered))
        assert got == [(f"m{i}".encode(), True) for i in range(1, 5)]
        await queue.delete()
