"""The broker's work per Fetch request, in process: framing, decoding, the handler, the
read and the answer, with no client and no socket in the way.

    .venv/bin/python -m tests.benchmarks.kafka_fetch_path --requests 200 [--version 11]

Prints the CPU time per request. As kafka_produce_path, it is meant for cachegrind:
run it with --requests 2 and 22 and divide the difference in instructions by 20 (the
same 24 batches of --records 1 KiB records are produced first in both runs, so they
drop out). Each request is a FetchRequest (v11 by default; any version 0-16 served)
of one partition at the offset of one stored batch, which the answer carries whole
(v4+ as the stored bytes, v0-3 converted into a message set).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import io
import shutil
import struct
import sys
import tempfile
import time
import uuid

from kio.serial import entity_writer

from portask.broker.core import Broker
from portask.config import Settings
from portask.protocols.kafka import compaction, registry, txn_markers
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.server import KafkaConnection, KafkaServer
from tests.benchmarks.kafka_produce_path import (
    PARTITIONS,
    TOPIC,
    Address,
    CountingTransport,
    produce_frames,
)

BATCHES = 24


def _feed(connection: KafkaConnection, frame: bytes) -> None:
    pos = 0
    while pos < len(frame):  # as the event loop hands over reads
        view = connection.get_buffer(-1)
        n = min(len(view), len(frame) - pos, 256 * 1024)
        view[:n] = frame[pos : pos + n]
        connection.buffer_updated(n)
        pos += n


def fetch_frames(count: int, records: int, version: int, topic_id: uuid.UUID) -> list[bytes]:
    schema = registry.schema(ApiKey.FETCH, version)
    types = sys.modules[schema.request_type.__module__]
    write = entity_writer(schema.request_type)
    frames = []
    for n in range(count):
        batch = n % BATCHES
        partition = registry.make(
            types.FetchPartition,
            partition=batch % PARTITIONS,
            current_leader_epoch=-1,
            fetch_offset=(batch // PARTITIONS) * records,
            last_fetched_epoch=-1,
            log_start_offset=-1,
            partition_max_bytes=4 << 20,
        )
        request = registry.make(
            schema.request_type,
            replica_id=-1,
            max_wait=datetime.timedelta(0),
            min_bytes=1,
            max_bytes=64 << 20,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=(
                registry.make(
                    types.FetchTopic, topic=TOPIC, topic_id=topic_id, partitions=(partition,)
                ),
            ),
            forgotten_topics_data=(),
            rack_id="",
        )
        body = io.BytesIO()
        write(body, request)
        client = b"bench"
        header = struct.pack(">hhih", ApiKey.FETCH, version, n + 1, len(client)) + client
        header += b"\0" if schema.request_flexible else b""
        frame = header + body.getvalue()
        frames.append(struct.pack(">i", len(frame)) + frame)
    return frames


async def run(requests: int, records: int, version: int) -> list[int]:
    data_dir = tempfile.mkdtemp(prefix="portask-fetch-path-")
    settings = Settings()
    settings = dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, data_dir=data_dir)
    )
    broker = Broker(settings).open()
    broker.start()
    txn_markers.attach(broker)
    broker.topics.compactor = compaction.compactor(
        int(settings.kafka.max_uncompressed_batch_bytes)
    )
    server = KafkaServer(broker, settings, [Address()])  # type: ignore[list-item]
    try:
        broker.topics.create(TOPIC, PARTITIONS)
        transport = CountingTransport()
        connection = KafkaConnection(server, Address())  # type: ignore[arg-type]
        connection.connection_made(transport)  # type: ignore[arg-type]
        for frame in produce_frames(BATCHES, records, None):
            _feed(connection, frame)
        produced = transport.written
        cpu_ns = []
        topic = broker.topics.get(TOPIC)
        assert topic is not None
        for frame in fetch_frames(requests, records, version, topic.topic_id):
            started = time.process_time_ns()
            _feed(connection, frame)
            cpu_ns.append(time.process_time_ns() - started)
        fetched = transport.written - produced
        if fetched < requests * records * 1024:
            raise SystemExit(f"fetches answered only {fetched} bytes")
        return cpu_ns
    finally:
        server.close_all()
        broker.transactions.stop()
        await broker.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--records", type=int, default=1000, help="records per batch")
    parser.add_argument("--version", type=int, default=11)
    args = parser.parse_args()
    cpu_ns = sorted(asyncio.run(run(args.requests, args.records, args.version)))
    median = cpu_ns[len(cpu_ns) // 2]
    print(
        f"{args.requests} Fetch v{args.version} requests of {args.records} records: "
        f"median {median / 1000:.0f} us of CPU per request"
    )


if __name__ == "__main__":
    main()
