"""A publish whose three frames arrive in one read is taken in one step
(``AmqpConnection._whole_publish``); the same frames one per read go through the frame
loop one by one. Both must give the same answers byte for byte, for good publishes and
for every way a publish can be refused.

In process on a transport that records what is written, as ``test_connection_framing``
(the thing under test is which frames a read carries, so the cut points must be exact).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from portask.broker.alarms import Alarms
from portask.broker.amqp.vhosts import VirtualHosts
from portask.config import Settings
from portask.protocols.amqp.context import AmqpContext
from portask.protocols.amqp.properties import AmqpPropertyCodec
from portask.protocols.amqp.server import AmqpServer
from tests.unit.protocols.amqp.test_connection_framing import RecordingTransport

MAX_MESSAGE = 2000  # the broker's max_message_bytes here
PROPERTIES = commands.Basic.Properties(content_type="text/plain", delivery_mode=1)


def _method(method: commands.Frame, channel: int = 1) -> bytes:
    return frame.marshal(method, channel)


def _header(size: int, channel: int = 1, properties: commands.Basic.Properties = PROPERTIES,
            ) -> bytes:
    return frame.marshal(ContentHeader(0, size, properties), channel)


def _body(body: bytes, channel: int = 1) -> bytes:
    return frame.marshal(ContentBody(body), channel)


def _publish(body: bytes, exchange: str = "", routing_key: str = "q",
             mandatory: bool = False) -> list[bytes]:
    return [_method(commands.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                           mandatory=mandatory)),
            _header(len(body)), _body(body)]


def _setup() -> list[bytes]:
    frames = [b"AMQP\x00\x00\x09\x01"]
    for method in (
        commands.Connection.StartOk(client_properties={}, mechanism="PLAIN",
                                    response="\0guest\0guest", locale="en_US"),
        commands.Connection.TuneOk(channel_max=2047, frame_max=4096, heartbeat=0),
        commands.Connection.Open(virtual_host="/"),
    ):
        frames.append(_method(method, 0))
    for method in (commands.Channel.Open(), commands.Queue.Declare(queue="q"),
                   commands.Basic.Consume(queue="q", consumer_tag="c", no_ack=True)):
        frames.append(_method(method))
    return frames


def _with_class(header: bytes, class_id: int) -> bytes:
    return header[:7] + class_id.to_bytes(2, "big") + header[9:]


# name: (frames after the set-up, what the answers must hold)
SCENARIOS: dict[str, tuple[list[bytes], bytes]] = {
    # Two publishes in a row, then one that no queue takes (dropped: not mandatory).
    "delivered": (_publish(b"a" * 10) + _publish(b"b" * 10) + _publish(b"c", routing_key="x"),
                  b"b" * 10),
    # The second publish repeats the first's method and header bytes (taken from the
    # first's reading); the third has other properties and is read anew.
    "repeated and changed": (_publish(b"a" * 10) + _publish(b"b" * 10)
                             + [_publish(b"c")[0], _header(3, properties=commands.Basic.Properties(
                                 content_type="text/other", priority=3)), _body(b"ccc")],
                             b"text/other"),
    # The same publish bytes after their exchange was deleted: 404, not the old exchange.
    "exchange deleted between repeats": (
        [_method(commands.Exchange.Declare(exchange="e", exchange_type="fanout")),
         _method(commands.Queue.Bind(queue="q", exchange="e")),
         *_publish(b"one", exchange="e"), *_publish(b"two", exchange="e"),
         _method(commands.Exchange.Delete(exchange="e")),
         *_publish(b"six", exchange="e")],
        b"NOT_FOUND - no exchange 'e' in vhost '/'"),
    # 404 closes channel 1; its content frames are dropped, the next publish too.
    "no exchange": (_publish(b"lost", exchange="missing") + _publish(b"after"),
                    b"NOT_FOUND - no exchange 'missing' in vhost '/'"),
    "unroutable mandatory": (_publish(b"back", routing_key="nowhere", mandatory=True),
                             b"NO_ROUTE"),
    "too large": (_publish(b"z" * (MAX_MESSAGE + 1)) + _publish(b"after"),
                  b"PRECONDITION_FAILED - message size"),
    "immediate": ([_method(commands.Basic.Publish(exchange="", routing_key="q",
                                                  immediate=True)),
                   _header(3), _body(b"abc")], b"immediate=true"),
    "header of another class": ([_publish(b"abc")[0], _with_class(_header(3), 61),
                                 _body(b"abc")], b"expected content header for class 60"),
    "body longer than announced": ([_publish(b"abc")[0], _header(2), _body(b"abc")],
                                   b"content body longer than announced"),
    # A body in two frames is not taken whole; the publish still completes.
    "body in two frames": ([_publish(b"abc")[0], _header(6), _body(b"abc"), _body(b"def"),
                            *_publish(b"next")], b"abcdef"),
    "header on another channel": ([_publish(b"abc")[0], _header(3, channel=2),
                                   _body(b"abc")], b"UNEXPECTED_FRAME"),
    "bad frame end after the body": ([*_publish(b"abc")[:2], _body(b"abc")[:-1] + b"\x00"],
                                     b"invalid_frame_end_marker"),
    # A run: publishes repeating the first's frames up to the body, taken together.
    "a run of repeats": ([frame for i in range(20) for frame in _publish(bytes([65 + i]) * 10)]
                         + _publish(b"other size"), b"T" * 10),
    "a run of unroutable mandatory repeats": (
        [frame for i in range(5) for frame in _publish(b"%d" % i, routing_key="nowhere",
                                                      mandatory=True)], b"NO_ROUTE"),
    "a run in a transaction": (
        [_method(commands.Tx.Select()),
         *[frame for i in range(5) for frame in _publish(b"tx%d" % i)],
         _method(commands.Tx.Commit())], b"tx4"),
    "a run to a fanout exchange and its two queues": (
        [_method(commands.Exchange.Declare(exchange="f", exchange_type="fanout")),
         _method(commands.Queue.Declare(queue="q2")),
         _method(commands.Queue.Bind(queue="q", exchange="f")),
         _method(commands.Queue.Bind(queue="q2", exchange="f")),
         _method(commands.Basic.Consume(queue="q2", consumer_tag="c2", no_ack=True)),
         *[frame for i in range(6) for frame in _publish(b"f%d" % i, exchange="f")]], b"f5"),
    "body frame too large": ([_publish(b"abc")[0], _header(5000), _body(b"y" * 5000)],
                             b"frame_too_large"),
}


async def _answers(reads: list[bytes]) -> bytes:
    settings = Settings()
    amqp = dataclasses.replace(settings.amqp, max_message_bytes=MAX_MESSAGE)
    server = AmqpServer(AmqpContext(amqp, settings.network, VirtualHosts(["/"]).open()))
    conn = server.connection()
    transport = RecordingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    for data in reads:
        conn.data_received(data)
    await asyncio.sleep(0)
    conn.connection_lost(None)
    return bytes(transport.data)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_publish_in_one_read_answers_as_frame_by_frame(name: str) -> None:
    frames, expected = SCENARIOS[name]
    setup = _setup()
    whole = asyncio.run(_answers([*setup, b"".join(frames)]))
    assert expected in whole
    assert asyncio.run(_answers(setup + frames)) == whole


def test_a_run_delivers_no_further_than_the_send_budget_in_one_turn() -> None:
    """A run of 20 publishes of 1,000 bytes to a consumer with no prefetch limit, on a
    connection whose send budget (network.write_buffer_high_bytes) is 4,096 bytes: the
    deliveries of the read's turn stop at the one that spends the budget (the fifth);
    the rest wait in the queue and go in the turns after, in order."""

    async def run() -> tuple[int, int]:
        settings = Settings()
        network = dataclasses.replace(settings.network, write_buffer_high_bytes=4096)
        server = AmqpServer(AmqpContext(settings.amqp, network, VirtualHosts(["/"]).open()))
        conn = server.connection()
        transport = RecordingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        publishes = [frame for i in range(20) for frame in _publish(bytes([65 + i]) * 1000)]
        conn.data_received(b"".join([*_setup(), *publishes]))
        first_turn = bytes(transport.data).count(b"\x00\x3c\x00\x3c")  # Basic.Deliver
        for _ in range(10):
            await asyncio.sleep(0)
        conn.connection_lost(None)
        data = bytes(transport.data)
        assert data.index(b"S" * 1000) < data.index(b"T" * 1000)
        return first_turn, data.count(b"\x00\x3c\x00\x3c")

    assert asyncio.run(run()) == (5, 20)


def _blocked_with(consumer: bool) -> tuple[int, bool]:
    """100 publishes of 1,000 bytes in one read against a 10,000-byte memory watermark:
    (messages the queue holds after the read, whether the connection is blocked)."""

    async def run() -> tuple[int, bool]:
        settings = Settings()
        alarms = Alarms(memory_watermark=10_000, disk_free_limit=0, data_dir=Path("."))
        vhosts = VirtualHosts(["/"], memory=alarms.memory).open()
        server = AmqpServer(AmqpContext(settings.amqp, settings.network, vhosts))
        alarms.subscribe(server.alarms_changed)
        conn = server.connection()
        transport = RecordingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        setup = _setup()
        if not consumer:
            setup = setup[:-1]  # no Basic.Consume: the messages stay in the queue
        publishes = [frame for i in range(100) for frame in _publish(b"%03d" % i * 333 + b"x")]
        conn.data_received(b"".join([*setup, *publishes]))
        queued = vhosts.get("/").queues["q"].message_count
        blocked = conn.blocked
        conn.connection_lost(None)
        return queued, blocked

    return asyncio.run(run())


def test_a_run_stops_at_the_publish_that_takes_the_memory_watermark() -> None:
    """RabbitMQ's rule: the publish that takes the memory use over the watermark is the
    last read. Each message is 1,000 bytes of body and 14 of properties here: the
    tenth takes 10,140 bytes over 10,000."""
    assert _blocked_with(consumer=False) == (10, True)


def test_messages_handed_to_an_auto_ack_consumer_raise_no_alarm() -> None:
    assert _blocked_with(consumer=True) == (0, False)


def test_a_run_whose_publishes_dead_letter_stops_where_the_frame_loop_would() -> None:
    """x-max-length 1 dead-lettering into a second queue: each publish holds more
    memory than its own bytes, so a run cannot be cut in advance; it stops at the
    publish that sets the alarm off, as the same frames one per read do."""

    async def run(one_read: bool) -> tuple[int, int, bool]:
        settings = Settings()
        alarms = Alarms(memory_watermark=20_000, disk_free_limit=0, data_dir=Path("."))
        vhosts = VirtualHosts(["/"], memory=alarms.memory,
                              codec=AmqpPropertyCodec()).open()
        server = AmqpServer(AmqpContext(settings.amqp, settings.network, vhosts))
        alarms.subscribe(server.alarms_changed)
        conn = server.connection()
        conn.connection_made(RecordingTransport())  # type: ignore[arg-type]
        setup = [*_setup()[:-2],  # no queue "q", no consumer
                 _method(commands.Queue.Declare(queue="dlq")),
                 _method(commands.Queue.Declare(queue="ql", arguments={
                     "x-max-length": 1, "x-dead-letter-exchange": "",
                     "x-dead-letter-routing-key": "dlq"}))]
        publishes = [frame for i in range(100)
                     for frame in _publish(b"%01000d" % i, routing_key="ql")]
        for data in [*setup, b"".join(publishes)] if one_read else setup + publishes:
            conn.data_received(data)
        queues = vhosts.get("/").queues  # type: ignore[union-attr]
        taken = (queues["ql"].published_total, queues["dlq"].message_count, conn.blocked)
        conn.connection_lost(None)
        return taken

    whole = asyncio.run(run(one_read=True))
    assert whole[2] and 10 < whole[0] < 30
    assert asyncio.run(run(one_read=False)) == whole
