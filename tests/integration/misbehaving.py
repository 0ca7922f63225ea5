"""Clients that misbehave the ways a broker must survive, and the broker's resident
memory while they do. Used by ``test_misbehaving_clients.py``; also runnable, to measure
one kind of client alone against a broker started from any source tree:

    .venv/bin/python -m tests.integration.misbehaving KIND COUNT [--src DIR] [-- ARGS...]

KIND is ``announce`` (Kafka: announce a 100 MiB request, send 256 KiB, go silent),
``stall`` (AMQP: stop in the middle of a frame), ``reader`` (AMQP: consume with no-ack
and never read while 64 KiB messages flow, ~100 a second, to each queue) or ``fetch``
(Kafka: pipeline 300 Fetches of up to 4 MiB each and never read). ``--src`` runs
``portask serve`` from another checkout (to compare with an earlier commit); ARGS go to
``portask serve``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from pamqp import commands

from tests.integration.amqp.rawclient import RawClient
from tests.integration.kafka.wire_client import encode_request, request_types

MIB = 1 << 20
FETCH = 1


def memory(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out


class MemorySampler(threading.Thread):
    """The peak of the broker's resident memory, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak: dict[str, int] = memory(pid)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.05):
            for key, value in memory(self.pid).items():
                self.peak[key] = max(self.peak[key], value)

    def stop(self) -> dict[str, int]:
        self._done.set()
        self.join()
        return self.peak


# -- the misbehaving clients -----------------------------------------------------------


def kafka_announces_100_mib_sends_256_kib(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(struct.pack(">i", 100 * MIB) + bytes(256 * 1024))
    return sock


def amqp_stalls_mid_frame(port: int) -> RawClient:
    client = RawClient(port)
    client.handshake(heartbeat_s=0)
    # A method frame announcing 100 000 bytes, of which 40 000 arrive.
    client.send(struct.pack(">BHI", 1, 1, 100_000) + bytes(40_000))
    return client


def amqp_consumes_and_never_reads(port: int, queue: str) -> RawClient:
    client = RawClient(port)
    client.handshake(heartbeat_s=0)
    client.send_method(1, commands.Basic.Consume(queue=queue, no_ack=True))
    client.expect(commands.Basic.ConsumeOk)
    return client


def kafka_pipelines_fetches_and_never_reads(port: int, topic: str) -> socket.socket:
    m = request_types(FETCH, 12)
    request = m.FetchRequest(
        max_wait=datetime.timedelta(milliseconds=200), min_bytes=1, max_bytes=4 * MIB,
        isolation_level=0, session_id=0, session_epoch=-1,
        topics=(m.FetchTopic(topic=topic, partitions=(
            m.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=4 * MIB),)),),
        forgotten_topics_data=(), rack_id="",
    )
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"".join(encode_request(request, i) for i in range(300)))
    return sock


def main() -> None:
    import pika
    from confluent_kafka import Producer

    from tests.broker_process import start_broker
    from tests.integration.kafka.clients import bootstrap, create_topic

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("announce", "stall", "reader", "fetch"))
    parser.add_argument("count", type=int)
    parser.add_argument("--src", type=Path, help="the checkout to run the broker from")
    parser.add_argument("--hold", type=float, default=4.0, help="seconds to misbehave")
    parser.add_argument("serve_args", nargs="*")
    args = parser.parse_args()
    if args.src is not None:
        os.chdir(args.src)  # `python -m portask` imports from the working directory
    broker = start_broker(Path(tempfile.mkdtemp(prefix="misbehaving-")) / "data",
                          *args.serve_args)
    stop = threading.Event()
    try:
        if args.kind == "fetch":
            create_topic(broker.kafka_port, "fetched", partitions=1)
            producer = Producer({"bootstrap.servers": bootstrap(broker.kafka_port)})
            for _ in range(128):
                producer.produce("fetched", os.urandom(64 * 1024), partition=0)
            producer.flush(10)
        flowing = threading.Thread(target=lambda: None)
        if args.kind == "reader":
            params = pika.ConnectionParameters("127.0.0.1", broker.amqp_port)
            conn = pika.BlockingConnection(params)
            ch = conn.channel()
            ch.exchange_declare("flow", "fanout")
            for i in range(args.count):
                ch.queue_declare(f"never-read-{i}", durable=True)
                ch.queue_bind(f"never-read-{i}", "flow")
            conn.close()

            def flow() -> None:
                conn = pika.BlockingConnection(params)
                ch = conn.channel()
                body = os.urandom(64 * 1024)
                while not stop.is_set():
                    ch.basic_publish("flow", "", body)
                    conn.sleep(0.01)
                conn.close()

            flowing = threading.Thread(target=flow, daemon=True)
        flowing.start()
        time.sleep(0.5)
        idle = memory(broker.proc.pid)
        sampler = MemorySampler(broker.proc.pid)
        sampler.start()
        keep: list[object] = []
        for i in range(args.count):
            if args.kind == "announce":
                keep.append(kafka_announces_100_mib_sends_256_kib(broker.kafka_port))
            elif args.kind == "stall":
                keep.append(amqp_stalls_mid_frame(broker.amqp_port))
            elif args.kind == "reader":
                keep.append(amqp_consumes_and_never_reads(broker.amqp_port, f"never-read-{i}"))
            else:
                keep.append(kafka_pipelines_fetches_and_never_reads(broker.kafka_port,
                                                                    "fetched"))
        time.sleep(args.hold)
        stop.set()
        flowing.join()
        peak = sampler.stop()
        print(f"{args.kind} x {args.count}: idle "
              + ", ".join(f"{k} {v / MIB:.1f}" for k, v in idle.items())
              + " MB; growth at peak "
              + ", ".join(f"{k} {(peak[k] - idle[k]) / MIB:+.1f}" for k in idle) + " MB")
    finally:
        stop.set()
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
