"""Per-connection limits: a connection silent in the middle of a frame or of a message's
content is closed after ``amqp.incomplete_frame_timeout_ms`` (set to 1 s here) even with
heartbeats off; an idle connection between frames is not (RabbitMQ keeps those too);
and a consumer that stops reading holds back its deliveries, then gets every one."""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterator

import pika
import pytest
from pamqp import body as pamqp_body
from pamqp import commands, frame, header

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.amqp.rawclient import RawClient

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(tmp_path_factory.mktemp("amqp-limits") / "data",
                        "--set", f"amqp.incomplete_frame_timeout_ms={int(TIMEOUT_S * 1000)}")
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


def _log_lines(broker: BrokerProcess, client: RawClient) -> list[str]:
    port = client.sock.getsockname()[1]
    return [ln for ln in broker.stderr_text().splitlines() if f"'127.0.0.1', {port})" in ln]


def _closed_after(client: RawClient, limit: float) -> float | None:
    started = time.monotonic()
    return time.monotonic() - started if client.closed_by_server(limit) else None


def test_connection_silent_mid_frame_is_closed_with_one_warning(broker: BrokerProcess) -> None:
    client = RawClient(broker.amqp_port)
    client.handshake(heartbeat_s=0)
    client.send(struct.pack(">BHI", 1, 1, 5000) + bytes(1000))  # 1000 of 5000 bytes
    waited = _closed_after(client, TIMEOUT_S * 4)
    assert waited is not None and waited >= TIMEOUT_S * 0.8
    lines = _log_lines(broker, client)
    assert len(lines) == 1 and " warning " in lines[0] and "incomplete" in lines[0], lines
    client.close()


def test_connection_silent_mid_content_is_closed(broker: BrokerProcess) -> None:
    client = RawClient(broker.amqp_port)
    client.handshake(heartbeat_s=0)
    client.send_method(1, commands.Basic.Publish(exchange="", routing_key="nowhere"))
    client.send(frame.marshal(header.ContentHeader(0, 100, commands.Basic.Properties()), 1))
    client.send(frame.marshal(pamqp_body.ContentBody(b"x" * 40), 1))  # 40 of 100 bytes
    assert _closed_after(client, TIMEOUT_S * 4) is not None
    client.close()


def test_idle_connection_between_frames_stays_open(broker: BrokerProcess) -> None:
    client = RawClient(broker.amqp_port)
    client.handshake(heartbeat_s=0)
    time.sleep(TIMEOUT_S * 2.5)
    client.send_method(1, commands.Queue.Declare(queue="", exclusive=True))
    assert client.expect(commands.Queue.DeclareOk).queue.startswith("amq.gen-")  # type: ignore[attr-defined]
    client.close()


def test_consumer_that_stops_reading_is_held_back_then_gets_every_message(
    broker: BrokerProcess,
) -> None:
    queue = f"slow-{uuid.uuid4().hex[:8]}"
    publisher = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))
    ch = publisher.channel()
    ch.queue_declare(queue)
    reader = RawClient(broker.amqp_port, timeout=30)
    reader.handshake(heartbeat_s=0)
    reader.send_method(1, commands.Basic.Consume(queue=queue, no_ack=True))
    reader.expect(commands.Basic.ConsumeOk)
    body = b"m" * (64 << 10)
    count = 600  # 38 MiB: more than socket buffers and the broker's bound together
    for _ in range(count):
        ch.basic_publish("", queue, body)
    publisher.sleep(1.0)
    waiting = ch.queue_declare(queue, passive=True).method.message_count
    assert waiting > count // 4, "the broker did not hold deliveries back"
    received = 0
    while received < count:  # one content header per delivered message
        _channel, value = reader.recv_frame()
        if isinstance(value, header.ContentHeader):
            assert value.body_size == len(body)
            received += 1
    assert received == count
    assert ch.queue_declare(queue, passive=True).method.message_count == 0
    ch.queue_delete(queue)
    publisher.close()
    reader.close()
