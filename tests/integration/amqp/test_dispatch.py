"""Which frame goes where: the connection's state, the channel's lifecycle, the tables.

Each case sends what a real client library would not (a raw client, frames encoded by
pamqp) and checks the reply RabbitMQ 3.10 gives: the code and the method it names.
"""

from __future__ import annotations

import struct

import pytest
from pamqp import commands, frame
from pamqp.base import Frame

from tests.broker_process import BrokerProcess
from tests.integration.amqp.rawclient import HEADER, RawClient


def _connection_close(client: RawClient) -> commands.Connection.Close:
    close = client.expect(commands.Connection.Close)
    assert isinstance(close, commands.Connection.Close)
    return close


def _provoke_channel_close(client: RawClient, channel: int = 1) -> None:
    """The server closes ``channel`` (404 on a passive declare of a missing queue)."""
    client.send_method(channel, commands.Queue.Declare(queue="no-such-queue", passive=True))
    close = client.expect(commands.Channel.Close)
    assert close.reply_code == 404  # type: ignore[attr-defined]


def test_channel_flow_is_answered_with_flow_ok(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(1, commands.Channel.Flow(active=False))
    assert client.expect(commands.Channel.FlowOk).active is False  # type: ignore[attr-defined]
    client.send_method(1, commands.Channel.Flow(active=True))
    assert client.expect(commands.Channel.FlowOk).active is True  # type: ignore[attr-defined]
    client.close()


def test_methods_on_a_closing_channel_are_dropped_until_close_ok(
    amqp_broker: BrokerProcess,
) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    _provoke_channel_close(client)
    client.send_method(1, commands.Basic.Qos(prefetch_count=5))  # dropped: no QosOk
    client.send_method(1, commands.Channel.CloseOk())
    client.send_method(1, commands.Channel.Open())
    channel, reply = client.recv_frame()
    assert channel == 1 and isinstance(reply, commands.Channel.OpenOk)
    client.close()


def test_close_crossing_the_servers_close_gets_close_ok(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    _provoke_channel_close(client)
    client.send_method(1, commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0,
                                                 method_id=0))
    channel, reply = client.recv_frame()
    assert channel == 1 and isinstance(reply, commands.Channel.CloseOk)
    client.send_method(1, commands.Channel.Open())
    assert client.recv_frame()[0] == 1
    client.close()


def test_client_closes_a_channel_and_reopens_it(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(1, commands.Channel.Close(reply_code=200, reply_text="done", class_id=0,
                                                   method_id=0))
    client.expect(commands.Channel.CloseOk)
    client.send_method(1, commands.Channel.Open())
    client.expect(commands.Channel.OpenOk)
    client.close()


def _method(channel: int, method: Frame) -> bytes:
    return frame.marshal(method, channel)


def _raw(frame_type: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + b"\xce"


@pytest.mark.parametrize(("sent", "close"), [
    pytest.param(_method(1, commands.Channel.CloseOk()), (503, 20, 41),
                 id="close-ok-on-an-open-channel"),
    pytest.param(_method(1, commands.Channel.Open()), (504, 20, 10), id="second-channel-open"),
    pytest.param(_method(1, commands.Basic.Deliver(consumer_tag="c", delivery_tag=1,
                                                   exchange="", routing_key="q")),
                 (503, 60, 60), id="a-method-only-the-server-sends"),
    pytest.param(_method(0, commands.Connection.TuneOk(channel_max=10, frame_max=4096,
                                                       heartbeat=0)),
                 (503, 10, 31), id="a-handshake-method-once-open"),
    pytest.param(_raw(3, 0, b"nowhere"), (504, 0, 0), id="content-on-channel-zero"),
    pytest.param(_raw(8, 1, b""), (501, 0, 0), id="heartbeat-on-a-channel"),
])
def test_on_an_open_connection(amqp_broker: BrokerProcess, sent: bytes,
                               close: tuple[int, int, int]) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send(sent)
    reply = _connection_close(client)
    assert (reply.reply_code, reply.class_id, reply.method_id) == close
    client.close()


@pytest.mark.parametrize(("sent", "close"), [
    pytest.param(_method(0, commands.Connection.Open(virtual_host="/")), (503, 10, 40),
                 id="handshake-methods-out-of-order"),
    pytest.param(_method(1, commands.Channel.Open()), (503, 0, 0),
                 id="channel-method-before-connection-open"),
    pytest.param(_raw(3, 1, b"early"), (505, 0, 0), id="content-before-connection-open"),
])
def test_during_the_handshake(amqp_broker: BrokerProcess, sent: bytes,
                              close: tuple[int, int, int]) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.send(HEADER)
    client.expect(commands.Connection.Start)
    client.send(sent)
    reply = _connection_close(client)
    assert (reply.reply_code, reply.class_id, reply.method_id) == close
    client.close()


def test_channel_above_the_negotiated_channel_max_is_530(amqp_broker: BrokerProcess) -> None:
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
    client.send_method(3, commands.Channel.Open())
    client.expect(commands.Channel.OpenOk)
    client.send_method(4, commands.Channel.Open())
    assert _connection_close(client).reply_code == 530
    client.close()


def test_after_the_servers_connection_close_only_close_ok_counts(
    amqp_broker: BrokerProcess,
) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(1, commands.Channel.CloseOk())  # 503 closes the connection
    _connection_close(client)
    # Ignored while the server waits for Close-Ok: no reply, no second Close.
    client.send_method(1, commands.Basic.Qos(prefetch_count=1))
    client.send_method(0, commands.Connection.Close(reply_code=200, reply_text="crossing",
                                                       class_id=0, method_id=0))
    client.expect(commands.Connection.CloseOk)
    assert client.closed_by_server()
    client.close()
