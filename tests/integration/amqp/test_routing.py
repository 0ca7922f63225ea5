"""Every exchange type routes as RabbitMQ does, through pika and aio-pika."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import aio_pika
import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tests.broker_process import BrokerProcess


@pytest.fixture
def channel(amqp_broker: BrokerProcess) -> Iterator[BlockingChannel]:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_broker.amqp_port))
    yield conn.channel()
    if conn.is_open:
        conn.close()


def drain(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> list[bytes]:
    out = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append(body)


def new_queue(channel: pika.adapters.blocking_connection.BlockingChannel) -> str:
    return channel.queue_declare("", exclusive=True).method.queue


def test_default_exchange_routes_by_queue_name(channel, name: Callable[[str], str]) -> None:
    q = name("q")
    channel.queue_declare(q, auto_delete=False)
    channel.basic_publish("", q, b"one")
    channel.basic_publish("", "no-such-queue", b"lost")
    assert drain(channel, q) == [b"one"]
    channel.queue_delete(q)


def test_direct_exchange(channel, name: Callable[[str], str]) -> None:
    ex = name("direct")
    channel.exchange_declare(ex, "direct")
    a, b = new_queue(channel), new_queue(channel)
    channel.queue_bind(a, ex, "red")
    channel.queue_bind(b, ex, "red")
    channel.queue_bind(b, ex, "blue")
    for key in ("red", "blue", "green"):
        channel.basic_publish(ex, key, key.encode())
    assert drain(channel, a) == [b"red"]
    assert drain(channel, b) == [b"red", b"blue"]
    channel.queue_unbind(b, ex, "red")
    channel.basic_publish(ex, "red", b"again")
    assert drain(channel, b) == []
    assert drain(channel, a) == [b"again"]


def test_fanout_exchange_ignores_keys(channel, name: Callable[[str], str]) -> None:
    ex = name("fanout")
    channel.exchange_declare(ex, "fanout")
    queues = [new_queue(channel) for _ in range(3)]
    for q in queues:
        channel.queue_bind(q, ex, "whatever")
    channel.basic_publish(ex, "any.key", b"all")
    assert [drain(channel, q) for q in queues] == [[b"all"]] * 3


TOPIC_CASES = [
    ("a.b.c", "a.b.c", True), ("a.*.c", "a.b.c", True), ("a.*.c", "a.c", False),
    ("a.*.c", "a.b.b.c", False), ("a.#", "a", True), ("a.#", "a.b.c", True),
    ("#", "", True), ("#", "x.y", True), ("#.c", "c", True), ("#.c", "a.b.c", True),
    ("#.c", "a.b.d", False), ("a.#.c", "a.c", True), ("a.#.c", "a.x.y.c", True),
    ("*", "a", True), ("*", "a.b", False), ("*", "", False), ("*.*", "a", False),
    ("a.#.#", "a", True), ("#.*", "", False), ("#.*", "a.b", True), ("a.*.#", "a", False),
    ("a.*.#", "a.b", True), ("", "", True), ("", "a", False),
]


def test_topic_exchange_wildcards(channel, name: Callable[[str], str]) -> None:
    ex = name("topic")
    channel.exchange_declare(ex, "topic")
    for pattern, key, expected in TOPIC_CASES:
        q = new_queue(channel)
        channel.queue_bind(q, ex, pattern)
        channel.basic_publish(ex, key, b"m")
        assert (drain(channel, q) == [b"m"]) is expected, (pattern, key)
        channel.queue_delete(q)


def test_headers_exchange_all_and_any(channel, name: Callable[[str], str]) -> None:
    ex = name("headers")
    channel.exchange_declare(ex, "headers")
    q_all, q_any, q_allx = new_queue(channel), new_queue(channel), new_queue(channel)
    channel.queue_bind(q_all, ex, "", arguments={"x-match": "all", "a": 1, "b": "two"})
    channel.queue_bind(q_any, ex, "", arguments={"x-match": "any", "a": 1, "b": "two"})
    channel.queue_bind(q_allx, ex, "", arguments={"x-match": "all-with-x", "x-k": "v"})
    def pub(headers: dict[str, object], body: bytes) -> None:
        channel.basic_publish(ex, "", body, pika.BasicProperties(
            content_type="text/plain", headers=headers))
    pub({"a": 1, "b": "two"}, b"both")
    pub({"a": 1}, b"a-only")
    pub({"a": 2, "b": "three"}, b"none")
    pub({"x-k": "v"}, b"x")
    assert drain(channel, q_all) == [b"both"]
    assert drain(channel, q_any) == [b"both", b"a-only"]
    assert drain(channel, q_allx) == [b"x"]


def test_exchange_to_exchange_binding(channel, name: Callable[[str], str]) -> None:
    src, dst = name("src"), name("dst")
    channel.exchange_declare(src, "topic")
    channel.exchange_declare(dst, "fanout")
    channel.exchange_bind(dst, src, "logs.#")
    q = new_queue(channel)
    channel.queue_bind(q, dst, "")
    channel.basic_publish(src, "logs.error", b"yes")
    channel.basic_publish(src, "metrics.cpu", b"no")
    assert drain(channel, q) == [b"yes"]
    channel.exchange_unbind(dst, src, "logs.#")
    channel.basic_publish(src, "logs.error", b"after-unbind")
    assert drain(channel, q) == []


def test_alternate_exchange_catches_unroutable(channel, name: Callable[[str], str]) -> None:
    ae, main = name("ae"), name("main")
    channel.exchange_declare(ae, "fanout")
    channel.exchange_declare(main, "direct", arguments={"alternate-exchange": ae})
    routed, caught = new_queue(channel), new_queue(channel)
    channel.queue_bind(routed, main, "k")
    channel.queue_bind(caught, ae, "")
    channel.basic_publish(main, "k", b"routed")
    channel.basic_publish(main, "other", b"caught")
    assert drain(channel, routed) == [b"routed"]
    assert drain(channel, caught) == [b"caught"]


def test_amq_predeclared_exchanges_exist(channel) -> None:
    for ex, kind in (("amq.direct", "direct"), ("amq.fanout", "fanout"),
                     ("amq.topic", "topic"), ("amq.headers", "headers"),
                     ("amq.match", "headers")):
        channel.exchange_declare(ex, kind, passive=True)
    q = new_queue(channel)
    channel.queue_bind(q, "amq.topic", "x.*")
    channel.basic_publish("amq.topic", "x.y", b"t")
    assert drain(channel, q) == [b"t"]


def test_internal_exchange_refuses_publish_with_403(amqp_broker: BrokerProcess,
                                                    name: Callable[[str], str]) -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_broker.amqp_port))
    ch = conn.channel()
    ex = name("internal")
    ch.exchange_declare(ex, "fanout", internal=True)
    ch.basic_publish(ex, "", b"x")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("", exclusive=True)
    assert info.value.reply_code == 403
    assert conn.is_open
    conn.close()


def test_exchange_delete_if_unused_and_auto_delete(channel, name: Callable[[str], str]) -> None:
    ex = name("ad")
    channel.exchange_declare(ex, "direct", auto_delete=True)
    q = new_queue(channel)
    channel.queue_bind(q, ex, "k")
    channel.queue_unbind(q, ex, "k")
    # The last binding went, so the auto-delete exchange went with it.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.exchange_declare(ex, "direct", passive=True)
    assert info.value.reply_code == 404


async def test_aio_pika_topic_and_headers_routing(amqp_broker: BrokerProcess) -> None:
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}/")
    async with conn:
        ch = await conn.channel()
        topic = await ch.declare_exchange("aio-topic", aio_pika.ExchangeType.TOPIC)
        headers = await ch.declare_exchange("aio-headers", aio_pika.ExchangeType.HEADERS)
        q1 = await ch.declare_queue(exclusive=True)
        q2 = await ch.declare_queue(exclusive=True)
        await q1.bind(topic, "stock.*.nyse")
        await q2.bind(headers, arguments={"x-match": "any", "format": "pdf", "type": "log"})
        await topic.publish(aio_pika.Message(b"ibm"), "stock.ibm.nyse")
        await topic.publish(aio_pika.Message(b"no"), "stock.ibm.lse")
        await headers.publish(aio_pika.Message(b"pdf", headers={"format": "pdf"}), "")
        await headers.publish(aio_pika.Message(b"zip", headers={"format": "zip"}), "")
        m1 = await q1.get(timeout=5)
        assert m1 is not None and m1.body == b"ibm"
        await m1.ack()
        assert await q1.get(fail=False) is None
        m2 = await q2.get(timeout=5)
        assert m2 is not None and m2.body == b"pdf" and m2.headers == {"format": "pdf"}
        await m2.ack()
        assert await q2.get(fail=False) is None


def test_same_publish_after_its_exchange_is_redeclared_routes_by_the_new_one(
        channel, name: Callable[[str], str]) -> None:
    """A channel repeating one Basic.Publish reuses its parse: deleting and redeclaring
    the exchange in between (another type, another binding) must route by the new one,
    and publishing once it is gone must close the channel with 404."""
    ex = name("redeclared")
    first, second = new_queue(channel), new_queue(channel)
    channel.exchange_declare(ex, "direct")
    channel.queue_bind(first, ex, "k")
    channel.basic_publish(ex, "k", b"one")
    channel.exchange_delete(ex)
    channel.exchange_declare(ex, "fanout")
    channel.queue_bind(second, ex, "other")
    channel.basic_publish(ex, "k", b"two")
    assert drain(channel, first) == [b"one"]
    assert drain(channel, second) == [b"two"]
    channel.exchange_delete(ex)
    channel.basic_publish(ex, "k", b"three")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        drain(channel, second)
    assert closed.value.reply_code == 404
