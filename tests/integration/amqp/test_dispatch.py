"""Which frame goes where: the connection's state, the channel's lifecycle, the tables.

Each case sends what a real client library would not (a raw client, frames encoded by
pamqp) and checks the reply RabbitMQ 3.10 gives (the exact errors are in
test_rabbitmq_answers.py).
"""

from __future__ import annotations

from pamqp import commands

from tests.broker_process import BrokerProcess
from tests.integration.amqp.rawclient import RawClient


def _connection_close(client: RawClient) -> commands.Connection.Close:
    close = client.expect(commands.Connection.Close)
    assert isinstance(close, commands.Connection.Close)
    return close


def _provoke_channel_close(client: RawClient, channel: int = 1) -> None:
    """The server closes ``channel`` (404 on a passive declare of a missing queue)."""
    client.send_method(channel, commands.Queue.Declare(queue="no-such-queue", passive=True))
    close = client.expect(commands.Channel.Close)
    assert close.reply_code == 404  # type: ignore[attr-defined]


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


def test_client_closes_a_channel_and_reopens_it(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(1, commands.Channel.Close(reply_code=200, reply_text="done", class_id=0,
                                                   method_id=0))
    client.expect(commands.Channel.CloseOk)
    client.send_method(1, commands.Channel.Open())
    client.expect(commands.Channel.OpenOk)
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
    # A crossing Close gets Close-Ok; the server still waits for ours, then closes.
    client.send_method(0, commands.Connection.Close(reply_code=200, reply_text="crossing",
                                                       class_id=0, method_id=0))
    client.expect(commands.Connection.CloseOk)
    client.send_method(0, commands.Connection.CloseOk())
    assert client.closed_by_server()
    client.close()
