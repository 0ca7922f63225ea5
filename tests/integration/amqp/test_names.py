"""Queue and exchange names: any UTF-8 short string, as RabbitMQ 3.10 accepts them.

RabbitMQ checks a name only for what the wire allows (a short string of at most 255
bytes, UTF-8 in methods without content), the reserved ``amq.`` prefix on creation, and
strips CR/LF in declare, delete and bind. Clients refuse a 256-byte name before sending
it: it cannot be written as a short string.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import aio_pika
import pika
import pika.exceptions
import pytest
from pamqp import commands, constants

from tests.broker_process import BrokerProcess
from tests.integration.amqp.rawclient import RawClient

NAMES = ["café", "a!b", "x$y", "é" * 127 + "z", "n" * 255]  # the last two are 255 bytes


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))


def unique(name: str) -> str:
    """The name with a unique tail, at the same UTF-8 length (short names grow by 9)."""
    tag = uuid.uuid4().hex[:8]
    raw = name.encode()
    if len(raw) + 9 <= 255:
        return f"{name}-{tag}"
    head = raw[: 255 - 9].decode(errors="ignore")
    return head + "z" * (246 - len(head.encode())) + "-" + tag


@pytest.fixture
def pamqp_accepts_any_name() -> Iterator[None]:
    """aio-pika builds methods with pamqp, whose validation allows only
    ``[a-zA-Z0-9-_.:@#,/+ ]`` in names (RabbitMQ allows any UTF-8): widen it in this
    client process, as an application using such names against RabbitMQ has to."""
    saved = dict(constants.DOMAIN_REGEX)
    anything = re.compile(".*", re.S)
    constants.DOMAIN_REGEX["queue-name"] = constants.DOMAIN_REGEX["exchange-name"] = anything
    yield
    constants.DOMAIN_REGEX.update(saved)


@pytest.mark.parametrize("base", NAMES, ids=["cafe", "bang", "dollar", "255-utf8", "255-ascii"])
def test_pika_declares_binds_publishes_consumes_and_gets_any_utf8_name(
    amqp_broker: BrokerProcess, base: str
) -> None:
    name = unique(base)
    assert len(name.encode()) <= 255
    conn = connect(amqp_broker)
    ch = conn.channel()
    assert ch.queue_declare(name).method.queue == name
    ch.exchange_declare(name, "direct")
    ch.queue_bind(name, name, routing_key=name)
    ch.basic_publish(name, name, b"one")
    method, _props, body = ch.basic_get(name, auto_ack=True)
    assert body == b"one" and method.exchange == name and method.routing_key == name
    got: list[tuple[str, str, bytes]] = []
    tag = ch.basic_consume(name, lambda c, m, p, b: got.append((m.exchange, m.consumer_tag, b)),
                           auto_ack=True, consumer_tag=name)
    assert tag == name
    ch.basic_publish(name, name, b"two")
    conn.process_data_events(time_limit=0)
    deadline = 50
    while not got and deadline:
        conn.process_data_events(time_limit=0.1)
        deadline -= 1
    assert got == [(name, name, b"two")]
    ch.basic_cancel(name)
    assert ch.queue_declare(name, passive=True).method.message_count == 0
    ch.queue_unbind(name, name, routing_key=name)
    ch.queue_delete(name)
    ch.exchange_delete(name)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(name, passive=True)
    assert info.value.reply_code == 404
    conn.close()


def test_reply_text_naming_a_255_byte_queue_is_cut_as_rabbitmq_cuts_it(
    amqp_broker: BrokerProcess,
) -> None:
    conn = connect(amqp_broker)
    name = "é" * 127 + "z"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        conn.channel().queue_declare(name, passive=True)
    text = info.value.reply_text
    # RabbitMQ keeps 252 bytes of "NOT_FOUND - no queue '...' in vhost '/'" and adds "...".
    assert info.value.reply_code == 404 and text.startswith("NOT_FOUND - no queue 'éé")
    assert text.endswith("...") and 250 <= len(text.encode()) <= 255
    assert conn.is_open
    conn.close()


def test_cr_and_lf_are_stripped_from_declared_names(
    amqp_broker: BrokerProcess, pamqp_accepts_any_name: None
) -> None:
    # A raw client: pika waits for a DeclareOk naming exactly the queue it asked for,
    # so against RabbitMQ too it would wait forever for "a\r\nb".
    base = f"crlf-{uuid.uuid4().hex[:8]}"
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(1, commands.Queue.Declare(queue=f"{base}\r\nq"))
    assert client.expect(commands.Queue.DeclareOk).queue == f"{base}q"  # type: ignore[attr-defined]
    client.send_method(1, commands.Exchange.Declare(exchange=f"{base}\nx", exchange_type="fanout"))
    client.expect(commands.Exchange.DeclareOk)
    client.send_method(1, commands.Queue.Bind(queue=f"{base}\nq", exchange=f"{base}\rx"))
    client.expect(commands.Queue.BindOk)
    client.close()
    conn = connect(amqp_broker)
    ch = conn.channel()
    ch.basic_publish(f"{base}x", "", b"via the stripped names")
    assert ch.basic_get(f"{base}q", auto_ack=True)[2] == b"via the stripped names"
    ch.queue_delete(f"{base}\nq")
    ch.exchange_delete(f"{base}\r\nx")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.queue_declare(f"{base}q", passive=True)
    conn.close()


def test_pika_refuses_a_256_byte_name_before_sending_and_the_connection_lives(
    amqp_broker: BrokerProcess,
) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ShortStringTooLong):
        ch.queue_declare("n" * 256)
    assert ch.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")
    conn.close()


@pytest.mark.parametrize("base", NAMES, ids=["cafe", "bang", "dollar", "255-utf8", "255-ascii"])
async def test_aio_pika_declares_binds_publishes_consumes_and_gets_any_utf8_name(
    amqp_broker: BrokerProcess, base: str, pamqp_accepts_any_name: None
) -> None:
    name = unique(base)
    # pamqp caps exchange names at 127 characters (the spec's exchange-name domain);
    # RabbitMQ and Portask take 255 bytes, which the pika test above covers.
    exchange_name = name if len(name) <= 127 else name[:118] + name[-9:]
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}/")
    async with conn:
        ch = await conn.channel()
        queue = await ch.declare_queue(name)
        assert queue.name == name
        exchange = await ch.declare_exchange(exchange_name, aio_pika.ExchangeType.DIRECT)
        await queue.bind(exchange, routing_key=name)
        await exchange.publish(aio_pika.Message(b"one"), routing_key=name)
        message = await queue.get(no_ack=True, timeout=5)
        assert message.body == b"one" and message.exchange == exchange_name
        assert message.routing_key == name
        async with queue.iterator() as messages:
            await exchange.publish(aio_pika.Message(b"two"), routing_key=name)
            async for received in messages:
                await received.ack()
                assert received.body == b"two" and received.exchange == exchange_name
                break
        await queue.unbind(exchange, routing_key=name)
        await queue.delete()
        await exchange.delete()


async def test_aio_pika_refuses_a_256_byte_name_before_sending(
    amqp_broker: BrokerProcess,
) -> None:
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}/")
    async with conn:
        ch = await conn.channel()
        with pytest.raises(TypeError, match="255 bytes"):
            await ch.declare_queue("n" * 256)
        queue = await ch.declare_queue("", exclusive=True)
        assert queue.name.startswith("amq.gen-")
