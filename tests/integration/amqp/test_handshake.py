"""Connection negotiation with real clients, and the raw-socket edge cases of it."""

from __future__ import annotations

import asyncio
import socket
import time

import aio_pika
import kombu
import pika
import pika.exceptions
import pytest
from pamqp import commands

from tests.broker_process import BrokerProcess
from tests.integration.amqp.rawclient import HEADER, RawClient

PRODUCT = {"portask": "Portask", "rabbitmq": "RabbitMQ"}


def _read_until_closed(sock: socket.socket) -> bytes:
    """What the server sends before it closes; RabbitMQ resets the connection after its
    answer (it closes with unread input), Portask closes it: both end the connection."""
    data = b""
    try:
        while chunk := sock.recv(100):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_pika_handshake_reports_server_properties(amqp_broker: BrokerProcess) -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_broker.amqp_port))
    try:
        props = conn._impl.server_properties
        # The one intended difference here: each broker names itself.
        assert props["product"] == PRODUCT[amqp_broker.kind]
        caps = props["capabilities"]
        for cap in ("publisher_confirms", "basic.nack", "consumer_cancel_notify",
                    "exchange_exchange_bindings", "per_consumer_qos",
                    "authentication_failure_close", "connection.blocked"):
            assert caps[cap] is True
        assert conn._impl.params.frame_max == 131072
        assert conn.channel().is_open
    finally:
        conn.close()


async def test_aio_pika_handshake_and_channel(amqp_broker: BrokerProcess) -> None:
    conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}/")
    async with conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(exclusive=True)
        assert queue.name.startswith("amq.gen-")
        assert conn.transport.connection.server_properties["product"] == PRODUCT[
            amqp_broker.kind]


def test_kombu_amqplain_publish_and_consume(amqp_broker: BrokerProcess) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}//"
    exchange = kombu.Exchange("kombu-ex", type="direct", durable=False)
    queue = kombu.Queue("kombu-q", exchange, routing_key="k", durable=False)
    with kombu.Connection(url, login_method="AMQPLAIN") as conn:
        producer = conn.Producer()
        producer.publish({"n": 1}, exchange=exchange, routing_key="k", declare=[queue],
                         serializer="json")
        received: list[object] = []
        with conn.Consumer(queue, callbacks=[lambda body, msg: (received.append(body),
                                                                 msg.ack())]):
            conn.drain_events(timeout=5)
        assert received == [{"n": 1}]


def test_wrong_password_is_refused_with_403(amqp_broker: BrokerProcess) -> None:
    params = pika.ConnectionParameters(
        "127.0.0.1", amqp_broker.amqp_port, credentials=pika.PlainCredentials("guest", "nope")
    )
    with pytest.raises(pika.exceptions.ProbableAuthenticationError, match="ACCESS_REFUSED"):
        pika.BlockingConnection(params)


def test_unknown_vhost_is_refused_with_530(amqp_broker: BrokerProcess) -> None:
    params = pika.ConnectionParameters("127.0.0.1", amqp_broker.amqp_port, virtual_host="nope")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError, match="530"):
        pika.BlockingConnection(params)


def test_wrong_protocol_header_gets_ours_and_close(amqp_broker: BrokerProcess) -> None:
    with socket.create_connection(("127.0.0.1", amqp_broker.amqp_port), timeout=5) as sock:
        sock.sendall(b"AMQP\x01\x01\x00\x0a")
        assert _read_until_closed(sock) == HEADER


def test_http_on_the_amqp_port_gets_the_header_and_close(amqp_broker: BrokerProcess) -> None:
    with socket.create_connection(("127.0.0.1", amqp_broker.amqp_port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert _read_until_closed(sock) == HEADER


def test_heartbeat_is_negotiated_and_keeps_idle_connection_alive(
    amqp_broker: BrokerProcess,
) -> None:
    params = pika.ConnectionParameters("127.0.0.1", amqp_broker.amqp_port, heartbeat=1)
    conn = pika.BlockingConnection(params)
    try:
        assert conn._impl.params.heartbeat == 1
        channel = conn.channel()
        conn.sleep(3.5)  # idle well past 2 x heartbeat; pika answers heartbeats meanwhile
        assert conn.is_open
        channel.queue_declare("", exclusive=True)
    finally:
        conn.close()


def test_server_sends_heartbeats_and_drops_a_silent_peer(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake(heartbeat_s=1)
    started = time.monotonic()
    # The server sends heartbeats to us ...
    _channel, value = client.recv_frame()
    assert type(value).__name__ == "Heartbeat"
    # ... and, as we never send any, drops the connection after about two intervals.
    assert client.closed_by_server(timeout=6)
    assert 1.5 <= time.monotonic() - started <= 6
    client.close()


def test_client_close_gets_close_ok(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(0, commands.Connection.Close(reply_code=200, reply_text="bye",
                                                          class_id=0, method_id=0))
    client.expect(commands.Connection.CloseOk)
    if amqp_broker.kind == "portask":
        # Difference on purpose: Portask closes the socket after Close-Ok; RabbitMQ waits
        # up to 30 s for the client to close it.
        assert client.closed_by_server()
    client.close()


async def test_aio_pika_reconnect_many_connections(amqp_broker: BrokerProcess) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{amqp_broker.amqp_port}/"
    conns = await asyncio.gather(*(aio_pika.connect(url) for _ in range(5)))
    for conn in conns:
        await conn.close()
