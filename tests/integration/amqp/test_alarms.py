"""Memory and disk alarms: publishing connections are blocked (Connection.Blocked) and
not read from until every alarm clears; consumers keep working meanwhile."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import aio_pika
import pika
import pytest
from pamqp import commands

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.amqp.rawclient import RawClient

BODY = b"m" * 65536
WATERMARK = 2 << 20  # 32 of those bodies
Events = list[tuple[str, str]]
Channel = pika.adapters.blocking_connection.BlockingChannel


@pytest.fixture(scope="module")
def memory_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(tmp_path_factory.mktemp("alarm-memory") / "data",
                        env={"PORTASK_AMQP_MEMORY_HIGH_WATERMARK_BYTES": "2MiB"})
    yield proc
    proc.stop()


@pytest.fixture
def disk_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    # A 1 PB free-space floor: the disk alarm is set from the first check at start-up.
    proc = start_broker(tmp_path / "data",
                        env={"PORTASK_AMQP_DISK_FREE_LIMIT_BYTES": str(10**15)})
    yield proc
    proc.stop()


def connect(broker: BrokerProcess, events: Events | None = None) -> pika.BlockingConnection:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))
    if events is not None:
        conn.add_on_connection_blocked_callback(
            lambda _c, frame: events.append(("blocked", frame.method.reason)))
        conn.add_on_connection_unblocked_callback(
            lambda _c, _frame: events.append(("unblocked", "")))
    return conn


def depth(channel: Channel, queue: str) -> int:
    return int(channel.queue_declare(queue, passive=True).method.message_count)


def publish_until_blocked(conn: pika.BlockingConnection, queue: str, events: Events) -> int:
    """Publish transient 64 KiB messages until Connection.Blocked arrives; how many sent.

    With confirms each publish waits for its ack, so none is in flight when Blocked
    (written before the ack of the publish that set the alarm) arrives.
    """
    channel = conn.channel()
    channel.confirm_delivery()
    sent = 0
    while not events:
        assert sent < 80, "no Connection.Blocked after 5 MiB"
        channel.basic_publish("", queue, BODY)
        sent += 1
        conn.process_data_events(time_limit=0)  # pika runs the blocked callback here
    return sent


def wait_for(condition: Callable[[], bool], conn: pika.BlockingConnection,
             timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        conn.process_data_events(time_limit=0.05)


def test_memory_alarm_blocks_a_publisher_until_memory_falls(
    memory_broker: BrokerProcess, name: Callable[[str], str],
) -> None:
    queue = name("mem")
    events: Events = []
    publisher = connect(memory_broker, events)
    admin = connect(memory_broker)
    inspect = admin.channel()
    inspect.queue_declare(queue)

    channel = publisher.channel()  # without confirms: its publishes will wait, unacked
    sent = publish_until_blocked(publisher, queue, events)
    assert events == [("blocked", "low on memory")]
    held = depth(inspect, queue)
    assert held == sent == WATERMARK // len(BODY)  # the publish that crossed the mark

    # Blocked: what the publisher sends now waits in the socket, not in the queue.
    for _ in range(3):
        channel.basic_publish("", queue, BODY)
        sent += 1
    publisher.process_data_events(time_limit=0.5)
    assert depth(inspect, queue) == held
    assert events == [("blocked", "low on memory")]

    # A purge from another connection drops memory to zero: Unblocked, and the
    # publishes that waited arrive.
    purged = inspect.queue_purge(queue).method.message_count
    assert purged == held
    wait_for(lambda: len(events) == 2, publisher)
    assert events[1] == ("unblocked", "")
    deadline = time.monotonic() + 5
    while depth(inspect, queue) < sent - purged:
        assert time.monotonic() < deadline, f"{depth(inspect, queue)} of {sent - purged}"
        time.sleep(0.02)
    assert purged + depth(inspect, queue) == sent  # nothing lost
    inspect.queue_delete(queue)
    publisher.close()
    admin.close()


async def test_consumers_drain_during_a_memory_alarm_with_aio_pika(
    memory_broker: BrokerProcess, name: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = name("drain")
    url = f"amqp://guest:guest@127.0.0.1:{memory_broker.amqp_port}/"
    caplog.set_level(logging.WARNING, logger="aiormq.connection")
    publisher = await aio_pika.connect(url)
    consumer = await aio_pika.connect(url)
    async with publisher, consumer:
        pch = await publisher.channel()  # publisher confirms on
        await pch.declare_queue(queue)
        count = 48  # 3 MiB: half as much again as the watermark
        publishing = asyncio.gather(*(
            pch.default_exchange.publish(aio_pika.Message(b"%06d" % i + BODY[6:]), queue)
            for i in range(count)))

        # aiormq's ready() waits while the connection is blocked.
        amqp = publisher.transport.connection
        deadline = time.monotonic() + 5
        while True:
            ready = asyncio.ensure_future(amqp.ready())
            done, _ = await asyncio.wait({ready}, timeout=0.05)
            if not done:
                break
            assert time.monotonic() < deadline, "never blocked"
        assert any(r.args and r.args[-1] == "low on memory" for r in caplog.records)
        assert not publishing.done()

        cch = await consumer.channel()
        await cch.set_qos(prefetch_count=8)
        declared = await cch.declare_queue(queue, passive=True)
        assert declared.declaration_result.message_count < count
        received: list[int] = []
        async with declared.iterator() as messages:
            async for message in messages:
                received.append(int(message.body[:6]))
                await message.ack()
                if len(received) == count:
                    break
        assert received == list(range(count))
        await asyncio.wait_for(ready, 5)  # Connection.Unblocked came
        confirms = await asyncio.wait_for(publishing, 5)
        assert len(confirms) == count
        await cch.queue_delete(queue)


def test_a_client_without_the_capability_is_blocked_without_being_told(
    memory_broker: BrokerProcess, name: Callable[[str], str],
) -> None:
    queue = name("raw")
    raw = RawClient(memory_broker.amqp_port)
    raw.handshake()  # advertises no capabilities
    raw.send_method(1, commands.Queue.Declare(queue=queue))
    raw.expect(commands.Queue.DeclareOk)

    events: Events = []
    filler = connect(memory_broker, events)
    sent = publish_until_blocked(filler, queue, events)
    admin = connect(memory_broker)
    inspect = admin.channel()
    held = depth(inspect, queue)

    body = b"raw"
    header = struct.pack(">HHQH", 60, 0, len(body), 0)
    raw.send_method(1, commands.Basic.Publish(exchange="", routing_key=queue))
    raw.send(struct.pack(">BHI", 2, 1, len(header)) + header + b"\xce"
             + struct.pack(">BHI", 3, 1, len(body)) + body + b"\xce")
    raw.send_method(1, commands.Queue.Declare(queue=queue, passive=True))
    # Not read from: no DeclareOk, and no Connection.Blocked either.
    raw.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        raw.recv_frame()
    assert depth(inspect, queue) == held

    inspect.queue_purge(queue)
    raw.sock.settimeout(5)
    raw.expect(commands.Queue.DeclareOk)  # the first frame after the alarm: no Unblocked
    wait_for(lambda: len(events) == 2, filler)
    deadline = time.monotonic() + 5
    assert sent == held
    while depth(inspect, queue) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert depth(inspect, queue) == 1
    inspect.queue_delete(queue)
    raw.sock.close()
    filler.close()
    admin.close()


def test_disk_alarm_blocks_publishers_from_the_start_and_spares_consumers(
    disk_broker: BrokerProcess, name: Callable[[str], str],
) -> None:
    queue = name("disk")
    consumer = connect(disk_broker)
    cch = consumer.channel()
    cch.queue_declare(queue)
    cch.basic_consume(queue, lambda *_: None)

    events: Events = []
    publisher = connect(disk_broker, events)
    pch = publisher.channel()
    pch.queue_declare(queue, passive=True)  # no publish yet: not blocked
    assert events == []
    pch.basic_publish("", queue, b"first")
    wait_for(lambda: bool(events), publisher)
    assert events == [("blocked", "low on disk")]

    # The consumer-only connection is served as usual; the message never arrived.
    assert depth(cch, queue) == 0
    assert cch.basic_get(queue) == (None, None, None)
    consumer.process_data_events(time_limit=0.2)
    assert consumer.is_open
    consumer.close()
    url = f"http://127.0.0.1:{disk_broker.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    assert 'portask_resource_alarm{resource="disk"} 1.0' in text
    assert 'portask_resource_alarm{resource="memory"} 0.0' in text
    # A blocked connection is not read, so its Connection.Close would wait for the alarm
    # (as with RabbitMQ); the broker's shutdown closes it instead.
