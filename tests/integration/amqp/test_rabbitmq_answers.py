"""Every connection error a client can provoke, byte for byte as RabbitMQ 3.10 answers it.

Each case is sent from a raw socket after the handshake (channel 1 open) and the test
expects the exact Connection.Close RabbitMQ sends: code, text, class id, method id. The
texts quote the refused octets the way RabbitMQ's Erlang formatting does. Like every
test that takes ``amqp_broker``, these run against Portask and against a real RabbitMQ.
"""

from __future__ import annotations

import struct

import aio_pika
import pika
import pika.exceptions
import pytest
from aio_pika.patterns import RPC
from pamqp import commands, frame
from pamqp.base import Frame

from tests.broker_process import BrokerProcess
from tests.integration.amqp.rawclient import HEADER, RawClient


def _raw(frame_type: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + end


def _method(channel: int, method: Frame) -> bytes:
    return frame.marshal(method, channel)


def _header(class_id: int = 60, weight: int = 0, size: int = 3) -> bytes:
    return _raw(2, 1, struct.pack(">HHQH", class_id, weight, size, 0))


PUBLISH = _method(1, commands.Basic.Publish(exchange="", routing_key="nowhere"))
QOS = _method(1, commands.Basic.Qos(prefetch_count=1))
QOS_PAYLOAD = QOS[7:-1]
UNEXPECTED_RUNNING = "CHANNEL_ERROR - unexpected method in connection state running"
UNIMPLEMENTED = "COMMAND_INVALID - unimplemented method"
EXPECTED_HEADER = ("UNEXPECTED_FRAME - expected content header for class 60, got non content "
                   "header frame instead")
EXPECTED_BODY = "UNEXPECTED_FRAME - expected content body, got non content body frame instead"
EXPECTED_METHOD = "UNEXPECTED_FRAME - expected method frame, got non method frame instead"

# (id, bytes sent after the handshake, the Connection.Close expected)
CASES = [
    # Framing: what RabbitMQ's reader refuses before any channel sees it.
    ("frame-too-large", _raw(3, 1, b"x" * 131_073),
     (501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,131073,131064}", 0, 0)),
    ("bad-frame-end", _raw(1, 1, QOS_PAYLOAD, end=b"\x00"),
     (501, "FRAME_ERROR - type 1, all octets = <<0,60,0,10,0,0,0,0,0,1,0>>: "
      "{invalid_frame_end_marker,0}", 0, 0)),
    ("unknown-frame-type", _raw(9, 1, b"abc"),
     (501, 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame', 0, 0)),
    ("heartbeat-with-payload", _raw(8, 0, b"x"),
     (501, 'FRAME_ERROR - type 8, all octets = <<"x">>: unknown_frame', 0, 0)),
    ("method-shorter-than-its-ids", _raw(1, 1, b"\x00\x3c\x00"),
     (501, "FRAME_ERROR - type 1, all octets = <<0,60,0>>: unknown_frame", 0, 0)),
    ("header-shorter-than-its-fields", PUBLISH + _raw(2, 1, b"\x00\x3c\x00"),
     (501, "FRAME_ERROR - type 2, all octets = <<0,60,0>>: unknown_frame", 0, 0)),
    ("heartbeat-on-a-channel", _raw(8, 1, b""),
     (505, "UNEXPECTED_FRAME - type 8, all octets = <<>>", 0, 0)),
    ("content-on-channel-zero", _raw(3, 0, b"nowhere"),
     (505, 'UNEXPECTED_FRAME - type 3, all octets = <<"nowhere">>', 0, 0)),
    ("long-content-on-channel-zero", _raw(3, 0, b"0123456789abcdefXYZ"),
     (505, 'UNEXPECTED_FRAME - type 3, first 16 octets = <<"0123456789abcdef">>', 0, 0)),
    # Content assembly, per channel.
    ("header-without-a-method", _header(), (505, EXPECTED_METHOD, 0, 0)),
    ("body-without-a-method", _raw(3, 1, b"abc"), (505, EXPECTED_METHOD, 0, 0)),
    ("method-instead-of-the-header", PUBLISH + QOS, (505, EXPECTED_HEADER, 60, 40)),
    ("header-of-another-class", PUBLISH + _header(class_id=50),
     (505, "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 "
      "instead", 60, 40)),
    ("header-with-a-weight", PUBLISH + _header(weight=1), (505, EXPECTED_HEADER, 60, 40)),
    ("method-instead-of-the-body", PUBLISH + _header() + QOS, (505, EXPECTED_BODY, 60, 40)),
    ("header-instead-of-the-body", PUBLISH + _header() + _header(), (505, EXPECTED_BODY, 60, 40)),
    # Methods only the server sends, or that answer nothing the server asked.
    ("basic.get-empty", _method(1, commands.Basic.GetEmpty()), (503, UNIMPLEMENTED, 60, 72)),
    ("basic.consume-ok", _method(1, commands.Basic.ConsumeOk(consumer_tag="x")),
     (503, UNIMPLEMENTED, 60, 21)),
    ("queue.declare-ok", _method(1, commands.Queue.DeclareOk(queue="x", message_count=0,
                                                             consumer_count=0)),
     (503, UNIMPLEMENTED, 50, 11)),
    ("channel.open-ok", _method(1, commands.Channel.OpenOk()), (503, UNIMPLEMENTED, 20, 11)),
    ("channel.close-ok-unasked", _method(1, commands.Channel.CloseOk()),
     (503, UNIMPLEMENTED, 20, 41)),
    ("connection-method-on-a-channel",
     _method(1, commands.Connection.Close(reply_code=200, reply_text="x", class_id=0,
                                          method_id=0)),
     (503, UNIMPLEMENTED, 10, 50)),
    # Channel 0 once the connection is open.
    ("connection.tune-ok-again",
     _method(0, commands.Connection.TuneOk(channel_max=10, frame_max=4096, heartbeat=0)),
     (504, UNEXPECTED_RUNNING, 10, 31)),
    ("connection.start-from-the-client", _method(0, commands.Connection.Start()),
     (504, UNEXPECTED_RUNNING, 10, 10)),
    ("channel.open-on-channel-zero", _method(0, commands.Channel.Open()),
     (504, UNEXPECTED_RUNNING, 20, 10)),
    ("basic.qos-on-channel-zero", _method(0, commands.Basic.Qos(prefetch_count=1)),
     (504, UNEXPECTED_RUNNING, 60, 10)),
    # Channel lifecycle.
    ("method-on-an-unopened-channel", _method(5, commands.Basic.Qos(prefetch_count=1)),
     (504, "CHANNEL_ERROR - expected 'channel.open'", 60, 10)),
    ("second-channel.open", _method(1, commands.Channel.Open()),
     (504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)),
    ("channel.flow-active-false", _method(1, commands.Channel.Flow(active=False)),
     (540, "NOT_IMPLEMENTED - active=false", 20, 20)),
    ("basic.recover-requeue-false", _method(1, commands.Basic.Recover(requeue=False)),
     (540, "NOT_IMPLEMENTED - requeue=false", 60, 110)),
    ("basic.recover-async-requeue-false",
     _method(1, commands.Basic.RecoverAsync(requeue=False)),
     (540, "NOT_IMPLEMENTED - requeue=false", 60, 100)),
    # Arguments that do not decode.
    ("qos-with-trailing-bytes", _raw(1, 1, QOS_PAYLOAD + b"\x07\x07"),
     (501, "FRAME_ERROR - cannot decode <<0,0,0,0,0,1,0,7,7>>", 60, 10)),
    ("consumer-tag-not-utf8",
     _raw(1, 1, b"\x00\x3c\x00\x14\x00\x00\x01q\x01\x80\x00\x00\x00\x00\x00"),
     (501, "FRAME_ERROR - Malformed UTF-8 in shortstr", 0, 0)),
]


@pytest.mark.parametrize(("sent", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_connection_error(amqp_broker: BrokerProcess, sent: bytes,
                          expected: tuple[int, str, int, int]) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send(sent)
    assert client.close_or_drop() == expected
    client.close()


def test_a_frame_as_large_as_frame_max_is_taken(amqp_broker: BrokerProcess) -> None:
    """RabbitMQ allows the 8 bytes of framing as slack: a payload of frame_max bytes is
    taken (AMQPStorm sends body frames that size)."""
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(1, commands.Queue.Declare(queue="", exclusive=True))
    queue = client.expect(commands.Queue.DeclareOk).queue  # type: ignore[attr-defined]
    body = b"b" * 131_072
    client.send(_method(1, commands.Basic.Publish(exchange="", routing_key=queue))
                + _raw(2, 1, struct.pack(">HHQH", 60, 0, len(body), 0)) + _raw(3, 1, body))
    client.send_method(1, commands.Basic.Get(queue=queue, no_ack=True))
    ok = client.expect(commands.Basic.GetOk)
    assert ok.message_count == 0  # type: ignore[attr-defined]
    client.close()


def test_channel_max_limits_open_channels_not_their_numbers(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.send(HEADER)
    client.expect(commands.Connection.Start)
    client.send_method(0, commands.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response="\0guest\0guest", locale="en_US"))
    tune = client.expect(commands.Connection.Tune)
    client.send_method(0, commands.Connection.TuneOk(
        channel_max=3, frame_max=tune.frame_max, heartbeat=0))  # type: ignore[attr-defined]
    client.send_method(0, commands.Connection.Open(virtual_host="/"))
    client.expect(commands.Connection.OpenOk)
    for number in (1, 2000, 65535):  # numbers above channel_max are fine
        client.send_method(number, commands.Channel.Open())
        assert client.recv_frame()[0] == number
    client.send_method(7, commands.Channel.Open())
    assert client.close_or_drop() == (
        530, "NOT_ALLOWED - number of channels opened (3) has reached the negotiated "
        "channel_max (3)", 0, 0)
    client.close()


def test_update_secret_is_accepted_and_the_connection_goes_on(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(0, commands.Connection.UpdateSecret(new_secret="guest", reason="refresh"))
    client.expect(commands.Connection.UpdateSecretOk)
    client.send_method(1, commands.Queue.Declare(queue="", exclusive=True))
    client.expect(commands.Queue.DeclareOk)
    client.close()


def test_channel_flow_active_true_is_answered(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(1, commands.Channel.Flow(active=True))
    assert client.expect(commands.Channel.FlowOk).active is True  # type: ignore[attr-defined]
    client.close()


def test_a_closing_channel_answers_close_and_refuses_a_second_open(
    amqp_broker: BrokerProcess,
) -> None:
    """After the server's Channel.Close the channel is closing until the client's Close-Ok:
    a crossing Close gets Close-Ok, the number stays taken (a second Open is 504)."""
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(1, commands.Queue.Declare(queue="no-such-queue", passive=True))
    assert client.expect(commands.Channel.Close).reply_code == 404  # type: ignore[attr-defined]
    client.send_method(1, commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0,
                                                 method_id=0))
    client.expect(commands.Channel.CloseOk)
    client.send_method(1, commands.Channel.Open())
    assert client.close_or_drop() == (504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)
    client.close()


@pytest.mark.parametrize("sent", [
    pytest.param(_method(0, commands.Connection.Open(virtual_host="/")),
                 id="handshake-methods-out-of-order"),
    pytest.param(_method(1, commands.Channel.Open()), id="channel-method-before-open"),
    pytest.param(_raw(3, 1, b"early"), id="content-before-open"),
    pytest.param(_method(0, commands.Connection.StartOk(
        client_properties={}, mechanism="EXTERNAL-NOPE", response="", locale="en_US")),
        id="unknown-mechanism"),
])
def test_errors_before_tune_ok_drop_the_connection_without_a_close(
    amqp_broker: BrokerProcess, sent: bytes,
) -> None:
    """RabbitMQ does not answer errors in the handshake (it waits 3 s first, to slow down
    password guessing; Portask closes at once): the socket just closes."""
    client = RawClient(amqp_broker.amqp_port)
    client.send(HEADER)
    client.expect(commands.Connection.Start)
    client.send(sent)
    assert client.close_or_drop() is None
    client.close()


def test_unbind_of_what_does_not_exist_is_ok(amqp_broker: BrokerProcess) -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_broker.amqp_port))
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_unbind("no-such-queue-anywhere", "amq.direct", "k")
    ch.queue_unbind(queue, "no-such-exchange-anywhere", "k")
    ch.queue_unbind(queue, "amq.direct", "never-bound")
    ch.exchange_unbind("amq.fanout", "no-such-exchange-anywhere", "k")
    ch.exchange_unbind("no-such-exchange-anywhere", "amq.direct", "k")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_unbind(queue, "", queue)
    assert (info.value.reply_code, info.value.reply_text) == (
        403, "ACCESS_REFUSED - operation not permitted on the default exchange")
    conn.close()


async def test_aio_pika_rpc_closes_after_its_queue_is_gone(amqp_broker: BrokerProcess) -> None:
    """aio-pika's RPC.close() unbinds its auto-delete result queue, which may be gone."""
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}/")
    async with conn:
        channel = await conn.channel()
        rpc = await RPC.create(channel)

        async def double(*, x: int) -> int:
            return 2 * x

        await rpc.register("double", double, auto_delete=True)
        assert await rpc.proxy.double(x=21) == 42
        await rpc.close()
        assert not channel.is_closed


@pytest.mark.parametrize(("name", "expected"), [
    ("", (403, "ACCESS_REFUSED - operation not permitted on the default exchange")),
    ("amq.nosuch", (403, "ACCESS_REFUSED - deletion of system exchange 'amq.nosuch' in vhost "
                         "'/' not allowed")),
])
def test_the_default_and_system_exchanges_cannot_be_deleted(
    amqp_broker: BrokerProcess, name: str, expected: tuple[int, str],
) -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_broker.amqp_port))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        conn.channel().exchange_delete(name)
    assert (info.value.reply_code, info.value.reply_text) == expected
    conn.close()


def test_passive_declare_of_the_default_exchange_is_refused(amqp_broker: BrokerProcess) -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_broker.amqp_port))
    ch = conn.channel()
    ch.exchange_declare("amq.direct", passive=True)  # a system exchange is fine
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.exchange_declare("", passive=True)
    assert (info.value.reply_code, info.value.reply_text) == (
        403, "ACCESS_REFUSED - operation not permitted on the default exchange")
    conn.close()


def test_delete_if_empty_of_a_queue_with_messages_is_406(amqp_broker: BrokerProcess) -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_broker.amqp_port))
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", queue, b"x")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_delete(queue, if_empty=True)
    assert (info.value.reply_code, info.value.reply_text) == (
        406, f"PRECONDITION_FAILED - queue '{queue}' in vhost '/' not empty")
    conn.close()
