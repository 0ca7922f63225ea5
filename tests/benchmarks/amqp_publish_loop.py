"""The AMQP publish -> deliver path in one process, without sockets, for counting its cost.

One connection declares a queue, consumes from it and publishes to it: every batch of
publish frames (method, content header, 1 KiB body) goes through ``data_received``, is
routed, stored and delivered back as Basic.Deliver frames, and (in "ack" mode) a
multiple Basic.Ack every 10 deliveries settles them, as ``tools/loadtest.py amqp`` does.
What the connection writes goes to a transport that only counts bytes.

Mode "confirms" is the persistent path: a durable queue whose messages go to its
segment log (a temporary directory), delivery_mode 2, publisher confirms, consumer acks.
Mode "backlog" is what a publisher faster than its consumer makes: prefetch 200 and a
standing backlog of 1,000, so each publish is stored and each delivery is dispatched
from the store by an ack that frees its prefetch slot.

The wall-clock figure is noisy on a shared machine; instructions are not:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m tests.benchmarks.amqp_publish_loop 100 ack   # and with 0
    (difference of the two "I refs") / (100 * 100) = instructions per message

A third argument installs that many control-API fault rules that match no publish
(basic.publish to other exchanges); a fourth, "log", turns the request log on.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import tempfile
import types
from pathlib import Path

from pamqp import commands, frame
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from portask.broker.amqp.message_store import QueueStorage
from portask.broker.amqp.vhosts import VirtualHosts
from portask.broker.control import Control
from portask.broker.core import log_config
from portask.config import Settings
from portask.protocols.amqp.context import AmqpContext
from portask.protocols.amqp.properties import AmqpPropertyCodec
from portask.protocols.amqp.server import AmqpServer
from portask.storage.directory import LogDirectory

BATCH = 100  # publishes per read, about what one socket read carries at full speed


class CountingTransport:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0  # everything written is taken at once

    def get_extra_info(self, name: str) -> None:
        return None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _method(channel: int, method: Frame) -> bytes:
    return frame.marshal(method, channel)


# Basic.Ack(multiple) on channel 1, packed here rather than by pamqp: the acks are built
# inside the measured run, and pamqp's marshal cost ~1,500 instructions per message.
_ACK = struct.Struct(">BHIHHQBB")


def _acks(tags: range) -> bytes:
    return b"".join(_ACK.pack(1, 1, 13, 60, 80, tag, 1, 0xCE) for tag in tags)


async def run(rounds: int, mode: str = "ack", fault_rules: int = 0,
              request_log: bool = False) -> int:
    """Publish ``rounds`` batches; returns the bytes the broker wrote back."""
    if mode != "confirms":
        return await _run(rounds, mode, VirtualHosts(["/"]).open(), fault_rules, request_log)
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings()
        logs = LogDirectory(Path(data_dir) / "logs", log_config(settings), flush_ms=None,
                            retention_check_ms=int(settings.storage.retention_check_ms))
        storage = QueueStorage(logs, fsync_always=False,
                               segment_bytes=int(settings.amqp.queue_segment_bytes))
        vhosts = VirtualHosts(["/"], storage=storage, codec=AmqpPropertyCodec()).open()
        try:
            return await _run(rounds, mode, vhosts, fault_rules, request_log)
        finally:
            vhosts.close()
            await logs.close()


async def _run(rounds: int, mode: str, vhosts: VirtualHosts, fault_rules: int,
               request_log: bool) -> int:
    settings = Settings()
    # The control API's state as app.py hands it to the AMQP server (no broker needed).
    control = Control(types.SimpleNamespace())  # type: ignore[arg-type]
    for n in range(fault_rules):
        control.faults.add(protocol="amqp", method="basic.publish", exchange=f"other-{n}",
                           action="close")
    control.requests.configure(enabled=request_log, size=1000)
    server = AmqpServer(AmqpContext(settings.amqp, settings.network, vhosts,
                                    faults=control.faults, requests=control.requests))
    conn = server.connection()
    transport = CountingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(b"AMQP\x00\x00\x09\x01")
    for method in (
        commands.Connection.StartOk(client_properties={}, mechanism="PLAIN",
                                    response="\0guest\0guest", locale="en_US"),
        commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0),
        commands.Connection.Open(virtual_host="/"),
    ):
        conn.data_received(_method(0, method))
    persistent = mode == "confirms"
    setup: list[Frame] = [commands.Channel.Open()]
    if persistent:
        setup.append(commands.Confirm.Select())
    if mode == "backlog":
        setup.append(commands.Basic.Qos(prefetch_count=200))
    setup += [
        commands.Queue.Declare(queue="bench", durable=persistent),
        commands.Basic.Consume(queue="bench", consumer_tag="c", no_ack=mode == "noack"),
    ]
    for method in setup:
        conn.data_received(_method(1, method))
    body = b"x" * 1024
    properties = commands.Basic.Properties(content_type="application/octet-stream",
                                           delivery_mode=2 if persistent else 1)
    publish = (_method(1, commands.Basic.Publish(exchange="", routing_key="bench"))
               + frame.marshal(ContentHeader(0, len(body), properties), 1)
               + frame.marshal(ContentBody(body), 1))
    batch = publish * BATCH
    acks = [_acks(range(r * BATCH + 10, (r + 1) * BATCH + 1, 10))
            for r in range(rounds)] if mode != "noack" else []
    if mode == "backlog":  # 200 delivered and unacked, 1,000 waiting: acks go from 200
        for _ in range(12):
            conn.data_received(batch)
        acks = [_acks(range(200 + r * BATCH + 10, 200 + (r + 1) * BATCH + 1, 10))
                for r in range(rounds)]
    for r in range(rounds):
        conn.data_received(batch)
        if acks:
            conn.data_received(acks[r])
    return transport.written


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "ack",
                    int(sys.argv[3]) if len(sys.argv) > 3 else 0,
                    len(sys.argv) > 4 and sys.argv[4] == "log"))
