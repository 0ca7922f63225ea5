"""The broker's work per Produce request, in process: framing, decoding, the handler, the
append and the answer, with no client and no socket in the way.

    .venv/bin/python -m tests.benchmarks.kafka_produce_path --requests 200 [--idempotent]
        [--fault-rules N] [--request-log]

Prints the CPU time per request. Under cachegrind it counts instructions, which other
load on the machine does not change (a shared 2-core VM makes wall-clock figures
spread by 2x): run it with --requests 2 and 22 and divide the difference by 20, so that
start-up and building the requests drop out (see BENCHMARKS.md).

Requests are ProduceRequest v9, one batch of --records 1 KiB records (kafka-python's
builder, incompressible values) each, to a 3-partition topic in a fresh data
directory. The transport only counts the bytes written back. ``--fault-rules N``
installs N control-API fault rules that match no request (another topic), so each
request is checked against all of them; ``--request-log`` turns the request log on.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import io
import random
import shutil
import struct
import sys
import tempfile
import time
from typing import Any

import crc32c
from kafka.record.default_records import DefaultRecordBatchBuilder
from kio.serial import entity_writer

from portask.broker.core import Broker
from portask.config import Settings
from portask.protocols.kafka import (
    apis,  # noqa: F401  (registers every API)
    compaction,
    registry,
    txn_markers,
)
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.server import KafkaConnection, KafkaServer

TOPIC = "bench"
PARTITIONS = 3
VALUE_BYTES = 1024


class CountingTransport:
    """Stands in for the socket: accepts every reply and counts its bytes."""

    def __init__(self) -> None:
        self.written = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 9092)}.get(
            name, default
        )

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def writelines(self, buffers: list[Any]) -> None:
        self.written += sum(len(b) for b in buffers)

    def get_write_buffer_size(self) -> int:
        return 0  # everything written is taken at once: the connection never holds back

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclasses.dataclass
class Address:
    host: str = "127.0.0.1"
    port: int = 9092
    kafka: None = None


def produce_frames(count: int, records: int, producer: tuple[int, int] | None) -> list[bytes]:
    """Size-prefixed ProduceRequest v9 frames, round-robin over the partitions."""
    pid, epoch = producer if producer is not None else (-1, -1)
    value = random.Random(1).randbytes(VALUE_BYTES)
    builder = DefaultRecordBatchBuilder(2, 0, 0, pid, epoch, 0 if pid >= 0 else -1, 4 << 20)
    for i in range(records):
        builder.append(i, timestamp=1_700_000_000_000 + i, key=None, value=value, headers=[])
    template = bytes(builder.build())
    schema = registry.schema(ApiKey.PRODUCE, 9)
    types = sys.modules[schema.request_type.__module__]
    write = entity_writer(schema.request_type)
    frames = []
    for n in range(count):
        batch = bytearray(template)
        if pid >= 0:  # each partition's sequence goes on where its previous batch ended
            struct.pack_into(">i", batch, 53, (n // PARTITIONS) * records)
            struct.pack_into(">I", batch, 17, crc32c.crc32c(bytes(batch[21:])))
        request = schema.request_type(
            transactional_id=None,
            acks=1,
            timeout=datetime.timedelta(seconds=5),
            topic_data=(
                types.TopicProduceData(
                    name=TOPIC,
                    partition_data=(
                        types.PartitionProduceData(index=n % PARTITIONS, records=bytes(batch)),
                    ),
                ),
            ),
        )
        body = io.BytesIO()
        write(body, request)
        client = b"bench"
        header = struct.pack(">hhih", ApiKey.PRODUCE, 9, n + 1, len(client)) + client + b"\0"
        frame = header + body.getvalue()
        frames.append(struct.pack(">i", len(frame)) + frame)
    return frames


async def run(requests: int, records: int, idempotent: bool, fault_rules: int = 0,
              request_log: bool = False) -> list[int]:
    data_dir = tempfile.mkdtemp(prefix="portask-produce-path-")
    settings = Settings()
    settings = dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, data_dir=data_dir)
    )
    broker = Broker(settings).open()
    broker.start()
    # As app.py wires a Kafka listener.
    txn_markers.attach(broker)
    broker.topics.compactor = compaction.compactor(
        int(settings.kafka.max_uncompressed_batch_bytes)
    )
    server = KafkaServer(broker, settings, [Address()])  # type: ignore[list-item]
    try:
        broker.topics.create(TOPIC, PARTITIONS)
        for n in range(fault_rules):
            broker.control.faults.add(protocol="kafka", action="drop", api="Produce",
                                      topic=f"other-{n}")
        broker.control.requests.configure(enabled=request_log)
        producer = broker.producer_ids.new() if idempotent else None
        frames = produce_frames(requests, records, producer)
        transport = CountingTransport()
        connection = KafkaConnection(server, Address())  # type: ignore[arg-type]
        connection.connection_made(transport)  # type: ignore[arg-type]
        cpu_ns = []
        for frame in frames:
            started = time.process_time_ns()
            pos = 0
            while pos < len(frame):  # as the event loop hands over reads
                view = connection.get_buffer(-1)
                n = min(len(view), len(frame) - pos, 256 * 1024)
                view[:n] = frame[pos : pos + n]
                connection.buffer_updated(n)
                pos += n
            cpu_ns.append(time.process_time_ns() - started)
        topic = broker.topics.get(TOPIC)
        assert topic is not None
        stored = sum(p.high_watermark for p in topic.partitions)
        if stored != requests * records or transport.written == 0:
            raise SystemExit(f"only {stored} of {requests * records} records were stored")
        return cpu_ns
    finally:
        server.close_all()
        broker.transactions.stop()
        await broker.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--records", type=int, default=1000, help="records per request")
    parser.add_argument("--idempotent", action="store_true")
    parser.add_argument("--fault-rules", type=int, default=0)
    parser.add_argument("--request-log", action="store_true")
    args = parser.parse_args()
    cpu_ns = sorted(asyncio.run(run(args.requests, args.records, args.idempotent,
                                    args.fault_rules, args.request_log)))
    median = cpu_ns[len(cpu_ns) // 2]
    print(
        f"{args.requests} requests of {args.records} records"
        f"{' (idempotent)' if args.idempotent else ''}: median {median / 1000:.0f} us "
        f"of CPU per request, {median / args.records:.0f} ns per record"
    )


if __name__ == "__main__":
    main()
