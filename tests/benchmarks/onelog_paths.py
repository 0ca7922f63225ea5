"""The two cross-protocol paths in one process, without sockets, for counting their cost.

``deliver``: a one-partition topic holds ``--records`` 1 KiB records (written before
the count starts, in 1,000-record batches as a Kafka producer would); one AMQP
connection consumes its stream from ``first`` with prefetch 1,000 and acks (multiple)
every 100 deliveries, as ``tools/loadtest.py onelog kafka-to-amqp`` does.
``publish``: one AMQP connection with confirms publishes ``--records`` 1 KiB messages
to the topic's stream, 100 per read, as ``tools/loadtest.py onelog amqp-to-kafka``
does; each read is followed by the connection's flush (the commit point and the
confirms). The broker is built as ``portask serve`` builds it (``App._amqp_server``).

    .venv/bin/python -m tests.benchmarks.onelog_paths deliver --records 20000

Instructions per message with cachegrind: run with --records 2000 and 22000 and divide
the difference by 20,000 (set-up and the first records drop out):

    PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python -m tests.benchmarks.onelog_paths deliver --records 22000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import tempfile
import time

from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from portask.app import App
from portask.broker.core import Broker
from portask.config import Settings
from portask.protocols.kafka import browse, txn_markers
from tests import kafka_batches as kb
from tests.benchmarks.amqp_publish_loop import CountingTransport

TOPIC = "onelog"
VALUE = b"x" * 1024
PER_READ = 100


def _method(channel: int, method: object) -> bytes:
    return frame.marshal(method, channel)  # type: ignore[arg-type]


async def run(mode: str, records: int) -> float:
    """Returns the CPU seconds of the measured part."""
    data_dir = tempfile.mkdtemp(prefix="onelog-bench-")
    try:
        settings = Settings()
        settings = dataclasses.replace(
            settings, server=dataclasses.replace(settings.server, data_dir=data_dir))
        broker = Broker(settings).open()
        txn_markers.attach(broker)
        codec = browse.KafkaRecordCodec(int(settings.kafka.max_uncompressed_batch_bytes))
        broker.topics.codec = codec
        broker.topics.create(TOPIC, 1, {})
        if mode == "deliver":
            partition = broker.topics.get(TOPIC).partitions[0]  # type: ignore[union-attr]
            for start in range(0, records, 1000):
                count = min(1000, records - start)
                batch = bytearray(kb.batch([kb.Record(b"k", VALUE, (), i)
                                            for i in range(count)], kb.NONE))
                batch[0:8] = partition.high_watermark.to_bytes(8, "big")
                partition.append(batch, count, kb.BASE_TS)
        server = App(settings, [])._amqp_server(broker)
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
        conn.data_received(_method(1, commands.Channel.Open()))
        await asyncio.sleep(0)
        started = time.process_time()
        if mode == "deliver":
            await _deliver(conn, transport, records)
        else:
            await _publish(conn, records)
        spent = time.process_time() - started
        # What was measured really happened: every record delivered, or appended.
        if mode == "deliver" and transport.written < records * len(VALUE):
            raise RuntimeError(f"only {transport.written} bytes delivered")
        appended = broker.topics.get(TOPIC).partitions[0].high_watermark  # type: ignore[union-attr]
        if mode == "publish" and appended != records:
            raise RuntimeError(f"{appended} of {records} publishes appended")
        conn.connection_lost(None)
        await broker.close()
        return spent
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def _deliver(conn: object, transport: CountingTransport, records: int) -> None:
    receive = conn.data_received  # type: ignore[attr-defined]
    receive(_method(1, commands.Basic.Qos(prefetch_count=1000))
            + _method(1, commands.Basic.Consume(queue=TOPIC, consumer_tag="c",
                                                arguments={"x-stream-offset": "first"})))
    for tag in range(PER_READ, records + 1, PER_READ):
        await asyncio.sleep(0)  # the connection's flush writes the deliveries
        receive(_method(1, commands.Basic.Ack(delivery_tag=tag, multiple=True)))
    await asyncio.sleep(0)


async def _publish(conn: object, records: int) -> None:
    receive = conn.data_received  # type: ignore[attr-defined]
    receive(_method(1, commands.Confirm.Select()))
    properties = commands.Basic.Properties(delivery_mode=2, timestamp=None)
    one = (_method(1, commands.Basic.Publish(exchange="", routing_key=TOPIC))
           + frame.marshal(ContentHeader(0, len(VALUE), properties), 1)
           + frame.marshal(ContentBody(VALUE), 1))
    burst = one * PER_READ
    for _ in range(records // PER_READ):
        receive(burst)
        await asyncio.sleep(0)  # the commit point (the batch append) and the confirms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("deliver", "publish"))
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    spent = asyncio.run(run(args.mode, args.records))
    print(f"{args.mode}: {args.records} messages, {spent * 1e6 / args.records:.2f} µs CPU each")


if __name__ == "__main__":
    main()
