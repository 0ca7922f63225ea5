"""Cross-protocol load test (Portask only: one log, two protocols).

``kafka-to-amqp``: a Kafka producer (confluent-kafka) writes ``--count`` records of
``--size`` bytes to a one-partition topic; then one lean AMQP consumer reads the topic's
stream queue from ``x-stream-offset: first`` and is timed from Basic.Consume to the last
delivery. ``amqp-to-kafka``: one lean AMQP publisher with confirms writes ``--count``
messages to the topic's stream queue (timed until the last confirm), then a Kafka
consumer (confluent-kafka) is timed reading them all. The lean AMQP client is
``loadtest_amqp``'s (pre-encoded frames, struct-parsed deliveries).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from loadtest_amqp import LeanClient, _read_acks, encoded_message
from pamqp import commands

_HEAD = struct.Struct(">BHI")
_ACK = struct.Struct(">BHIHHQB")


def create_topic(args: argparse.Namespace, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    config = {"compression.type": args.compression} if args.compression else {}
    admin.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(10)


def kafka_to_amqp(args: argparse.Namespace, topic: str) -> dict[str, Any]:
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 20,
                         "batch.num.messages": 1000, "queue.buffering.max.messages": 1 << 20,
                         "compression.type": args.compression or "none"})
    value = b"x" * args.size
    for i in range(args.count):
        while True:
            try:
                producer.produce(topic, key=b"k%d" % (i % 16), value=value)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(60) == 0
    client = LeanClient(args.host, args.port, "guest", "guest", "/")
    client.call(commands.Basic.Qos(prefetch_count=args.prefetch), commands.Basic.QosOk)
    sock = client.sock
    start = time.monotonic()
    client.call(commands.Basic.Consume(queue=topic, arguments={"x-stream-offset": "first"}),
                commands.Basic.ConsumeOk)
    buf = bytearray(client.buf)
    delivered = last_tag = acked = 0
    sock.settimeout(10)
    while delivered < args.count:
        data = sock.recv(1 << 20)
        if not data:
            break
        buf += data
        pos, n = 0, len(buf)
        while n - pos >= 8:
            ftype, _ch, size = _HEAD.unpack_from(buf, pos)
            end = pos + 7 + size
            if end >= n:
                break
            if ftype == 1 and buf[pos + 8] == 0x3C and buf[pos + 10] == 0x3C:
                last_tag = struct.unpack_from(">Q", buf, pos + 12 + buf[pos + 11])[0]
                delivered += 1
            pos = end + 1
        del buf[:pos]
        if last_tag - acked >= args.prefetch // 2 or delivered >= args.count:
            sock.sendall(_ACK.pack(1, 1, 13, 60, 80, last_tag, 1) + b"\xce")
            acked = last_tag
    elapsed = time.monotonic() - start
    client.close()
    return {"direction": "kafka-to-amqp", "messages": delivered, "seconds": round(elapsed, 3),
            "msg_per_s": round(delivered / elapsed)}


def amqp_to_kafka(args: argparse.Namespace, topic: str) -> dict[str, Any]:
    client = LeanClient(args.host, args.port, "guest", "guest", "/")
    opts = argparse.Namespace(persistent=True, exchange_type="default", size=args.size,
                              exchange="")
    prefix, suffix = encoded_message(opts, topic, client.frame_max)
    sock: socket.socket = client.sock
    client.call(commands.Confirm.Select(), commands.Confirm.SelectOk)
    sock.setblocking(False)
    sent = confirmed = 0
    ack_buf = b""
    start = time.monotonic()
    stamp = struct.pack(">Q", 0)
    while sent < args.count:
        while sent - confirmed > args.confirm_window:
            confirmed, ack_buf = _read_acks(sock, confirmed, ack_buf, block=True)
        n = min(50, args.count - sent)
        sock.setblocking(True)
        sock.sendall(b"".join([prefix + stamp + suffix] * n))
        sock.setblocking(False)
        sent += n
        confirmed, ack_buf = _read_acks(sock, confirmed, ack_buf, block=False)
    deadline = time.monotonic() + 30
    while confirmed < sent and time.monotonic() < deadline:
        confirmed, ack_buf = _read_acks(sock, confirmed, ack_buf, block=True)
    published = time.monotonic() - start
    sock.setblocking(True)
    client.close()
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "onelog-" + topic,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.max.bytes": 50 << 20})
    consumer.subscribe([topic])
    got = 0
    first = 0.0
    deadline = time.monotonic() + 120
    while got < confirmed and time.monotonic() < deadline:
        batch = consumer.consume(10_000, 0.5)
        if batch and not first:
            first = time.monotonic()
        got += sum(1 for m in batch if not m.error())
    consumed = time.monotonic() - (first or time.monotonic())
    consumer.close()
    return {"direction": "amqp-to-kafka", "confirmed": confirmed,
            "publish_seconds": round(published, 3),
            "publish_msg_per_s": round(confirmed / published),
            "consumed": got, "consume_msg_per_s": round(got / max(consumed, 1e-9))}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="loadtest.py onelog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("direction", choices=("kafka-to-amqp", "amqp-to-kafka"))
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672, help="AMQP port")
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--prefetch", type=int, default=1000)
    parser.add_argument("--confirm-window", type=int, default=5000)
    parser.add_argument("--compression", default="", help="the topic's compression.type")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    topic = f"onelog-{uuid.uuid4().hex[:8]}"
    create_topic(args, topic)
    run = kafka_to_amqp if args.direction == "kafka-to-amqp" else amqp_to_kafka
    print(json.dumps(run(args, topic)))
    return 0
