"""Channel and connection errors: the right code, and nothing else harmed."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pika
import pika.exceptions
import pytest
from pamqp import commands

from tests.broker_process import BrokerProcess
from tests.integration.amqp.rawclient import RawClient


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))


def test_server_named_queues_are_unique(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    names = {ch.queue_declare("", exclusive=True).method.queue for _ in range(5)}
    assert len(names) == 5 and all(n.startswith("amq.gen-") for n in names)
    conn.close()


def test_passive_declare_of_missing_queue_is_404_and_connection_survives(
    amqp_broker: BrokerProcess,
) -> None:
    conn = connect(amqp_broker)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("does-not-exist", passive=True)
    assert info.value.reply_code == 404
    assert "does-not-exist" in info.value.reply_text
    assert conn.is_open
    assert conn.channel().queue_declare("", exclusive=True).method.queue
    conn.close()


def test_exclusive_queue_is_locked_from_another_connection(
    amqp_broker: BrokerProcess, name: Callable[[str], str]
) -> None:
    owner, other = connect(amqp_broker), connect(amqp_broker)
    q = name("excl")
    owner.channel().queue_declare(q, exclusive=True)
    ch = other.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_consume(q, lambda *a: None)
    assert info.value.reply_code == 405
    owner.close()  # exclusive queues die with their connection
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        other.channel().queue_declare(q, passive=True)
    assert info.value.reply_code == 404
    other.close()


def test_mismatched_redeclare_is_406(amqp_broker: BrokerProcess,
                                     name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    q, ex = name("q"), name("ex")
    ch = conn.channel()
    ch.queue_declare(q, durable=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(q, durable=False)
    assert info.value.reply_code == 406 and "durable" in info.value.reply_text
    ch = conn.channel()
    ch.exchange_declare(ex, "direct")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.exchange_declare(ex, "fanout")
    assert info.value.reply_code == 406
    ch = conn.channel()
    ch.queue_delete(q)
    ch.exchange_delete(ex)
    conn.close()


def test_queue_delete_if_empty_and_if_unused(amqp_broker: BrokerProcess,
                                             name: Callable[[str], str]) -> None:
    conn = connect(amqp_broker)
    q = name("q")
    ch = conn.channel()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"x")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_delete(q, if_empty=True)
    assert info.value.reply_code == 406
    ch = conn.channel()
    ch.basic_consume(q, lambda *a: None)
    ch2 = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch2.queue_delete(q, if_unused=True)
    assert info.value.reply_code == 406
    assert conn.channel().queue_delete(q).method.message_count == 0  # one is unacked
    conn.close()


def test_reserved_names_are_403(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        conn.channel().queue_declare("amq.mine")
    assert info.value.reply_code == 403
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        conn.channel().exchange_declare("amq.mine", "direct")
    assert info.value.reply_code == 403
    conn.close()


def test_unknown_exchange_type_closes_connection_503(amqp_broker: BrokerProcess) -> None:
    conn = connect(amqp_broker)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.channel().exchange_declare("weird", "x-unknown")
    assert info.value.reply_code == 503


def _close_code(client: RawClient) -> int:
    close = client.expect(commands.Connection.Close)
    return close.reply_code  # type: ignore[attr-defined]


def test_bad_frame_end_is_501_and_broker_keeps_serving(amqp_broker: BrokerProcess) -> None:
    bad = RawClient(amqp_broker.amqp_port)
    bad.handshake()
    bystander = connect(amqp_broker)
    frame = bytearray(commands_frame(1, commands.Queue.Declare(queue="x", exclusive=True)))
    frame[-1] = 0x00
    bad.send(bytes(frame))
    assert _close_code(bad) == 501
    assert bad.closed_by_server()
    bad.close()
    ch = bystander.channel()
    ch.queue_declare("", exclusive=True)
    assert bystander.is_open
    bystander.close()


def commands_frame(channel: int, method: object) -> bytes:
    from pamqp import frame

    return frame.marshal(method, channel)  # type: ignore[arg-type]


def test_frame_larger_than_frame_max_is_501(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send(struct.pack(">BHI", 3, 1, 10_000_000))  # header alone; body never comes
    assert _close_code(client) == 501
    client.close()


def test_content_without_method_is_505(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    body = b"orphan"
    client.send(struct.pack(">BHI", 3, 1, len(body)) + body + b"\xce")
    assert _close_code(client) == 505
    client.close()


def test_method_in_the_middle_of_content_is_505(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(1, commands.Basic.Publish(exchange="", routing_key="q"))
    client.send_method(1, commands.Basic.Qos(prefetch_count=1))
    assert _close_code(client) == 505
    client.close()


def test_method_on_unopened_channel_is_504(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(7, commands.Basic.Qos(prefetch_count=1))
    assert _close_code(client) == 504
    client.close()


def test_garbage_field_table_is_501(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    # Queue.Declare with an arguments table whose one entry has an unknown type tag 'Z'.
    payload = (struct.pack(">HH", 50, 10) + b"\x00\x00" + b"\x01q" + b"\x00"
               + struct.pack(">I", 6) + b"\x01kZabc")
    client.send(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")
    close = client.close_or_drop()
    if amqp_broker.kind == "rabbitmq":
        # Difference on purpose: RabbitMQ's table decoder crashes on the tag and the
        # connection is dropped without a Close; Portask says what it could not decode.
        assert close is None
    else:
        assert close == (501, "FRAME_ERROR - cannot decode <<0,0,1,113,0,0,0,0,6,1,107,90,97,"
                         "98,99>>", 50, 10)
    client.close()


def test_unknown_method_is_540(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    payload = struct.pack(">HH", 60, 999)
    client.send(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")
    close = client.close_or_drop()
    if amqp_broker.kind == "rabbitmq":
        # Difference on purpose: RabbitMQ drops the connection without a Close (its method
        # lookup crashes); Portask answers the spec's 540.
        assert close is None
    else:
        assert close == (540, "NOT_IMPLEMENTED - unknown method 60.999", 60, 999)
    client.close()


def test_unknown_frame_type_is_501(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send(struct.pack(">BHI", 9, 0, 0) + b"\xce")
    assert _close_code(client) == 501
    client.close()


def test_client_that_stops_reading_does_not_take_the_broker_down(
    amqp_broker: BrokerProcess,
) -> None:
    slow = RawClient(amqp_broker.amqp_port)
    slow.handshake()
    slow.send_method(1, commands.Queue.Declare(queue="slow-reader"))
    q = slow.expect(commands.Queue.DeclareOk).queue  # type: ignore[attr-defined]
    slow.send_method(1, commands.Basic.Consume(queue=q, no_ack=True))
    slow.expect(commands.Basic.ConsumeOk)
    pub = connect(amqp_broker)
    ch = pub.channel()
    body = b"x" * 65536
    for _ in range(400):  # 26 MB towards a client that never reads
        ch.basic_publish("", q, body)
    ch.queue_declare("", exclusive=True)
    # The broker held back: most messages are still in the queue, not in socket buffers.
    assert ch.queue_declare(q, passive=True).method.message_count > 0
    ch.queue_delete(q)
    pub.close()
    slow.close()
