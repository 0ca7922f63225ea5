"""Frame splitting in ``AmqpConnection._parse``: however the bytes are cut into reads,
the broker takes the same frames and writes the same answers.

The connection runs in process on a transport that records what it writes (no socket:
the thing under test is the parser's buffering, and the cut points must be exact).
"""

from __future__ import annotations

import asyncio

import pytest
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from portask.broker.amqp.vhosts import VirtualHosts
from portask.config import Settings
from portask.protocols.amqp.context import AmqpContext
from portask.protocols.amqp.server import AmqpServer


class RecordingTransport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> None:
        return None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def _session(body_size: int) -> bytes:
    """Handshake, a queue with a consumer, five publishes (bodies split at frame_max
    when large) and a multiple ack."""
    parts = [b"AMQP\x00\x00\x09\x01"]
    for method in (
        commands.Connection.StartOk(client_properties={}, mechanism="PLAIN",
                                    response="\0guest\0guest", locale="en_US"),
        commands.Connection.TuneOk(channel_max=2047, frame_max=4096, heartbeat=0),
        commands.Connection.Open(virtual_host="/"),
    ):
        parts.append(frame.marshal(method, 0))
    for method in (commands.Channel.Open(), commands.Queue.Declare(queue="q"),
                   commands.Basic.Consume(queue="q", consumer_tag="c")):
        parts.append(frame.marshal(method, 1))
    properties = commands.Basic.Properties(content_type="text/plain", delivery_mode=1)
    for i in range(5):
        body = bytes([65 + i]) * body_size
        parts.append(frame.marshal(commands.Basic.Publish(exchange="", routing_key="q"), 1))
        parts.append(frame.marshal(ContentHeader(0, len(body), properties), 1))
        for start in range(0, len(body), 4088):
            parts.append(frame.marshal(ContentBody(body[start:start + 4088]), 1))
    parts.append(frame.marshal(commands.Basic.Ack(delivery_tag=5, multiple=True), 1))
    return b"".join(parts)


async def _answers(reads: list[bytes]) -> bytes:
    settings = Settings()
    server = AmqpServer(AmqpContext(settings.amqp, settings.network,
                                    VirtualHosts(["/"]).open()))
    conn = server.connection()
    transport = RecordingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    for data in reads:
        conn.data_received(data)
    await asyncio.sleep(0)
    assert not transport.closed
    conn.connection_lost(None)
    return bytes(transport.data)


def _cut(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("body_size", [0, 1000, 10_000])
@pytest.mark.parametrize("read_size", [1, 6, 7, 8, 13, 1000, 4097])
def test_frames_cut_anywhere_get_the_same_answers(body_size: int, read_size: int) -> None:
    data = _session(body_size)
    whole = asyncio.run(_answers([data]))
    # Five deliveries came back: each carries its body, whatever the cut.
    assert whole.count(b"\x00\x3c\x00\x3c") == 5
    assert asyncio.run(_answers(_cut(data, read_size))) == whole

