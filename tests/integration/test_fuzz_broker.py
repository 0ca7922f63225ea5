"""End-to-end fuzz: mutated frames at both listeners of a running broker, while
well-behaved clients keep working.

For ``--fuzz-seconds`` (10 in `make test`, 600 under `make fuzz`), fuzzer threads open
connection after connection to the Kafka and AMQP listeners and send valid requests
and sessions put through tests/mutation.py (some connections stall mid-request,
some carry record batches whose CRC was recomputed after mutation, so that garbage
reaches the records). Meanwhile a confluent-kafka producer and consumer and a pika
publisher with confirms check that every message they send comes back intact.

The test fails if the broker dies, if its log holds a traceback, if a well-behaved
client sees any error, or if the broker's RSS grew by more than 50 MB from after the
warm-up to the end.
Everything is on loopback, and every loop is bounded by the deadline or a count.
"""

from __future__ import annotations

import dataclasses
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka.record.legacy_records import LegacyRecordBatchBuilder

from portask.protocols.kafka import (
    apis,  # noqa: F401  (registers every API)
    registry,
)
from tests.amqp_session import FIRST_PUBLISH, FRAME_HEAD, session, with_payload
from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.clients import bootstrap, create_topic
from tests.integration.kafka.wire_client import encode_request
from tests.kafka_batches import LZ4, NONE, SNAPPY, ZSTD, Record, batch, fix_checksums
from tests.mutation import mutate
from tests.unit.protocols.kafka.kio_values import sample

pytestmark = pytest.mark.fuzz

RSS_GROWTH_LIMIT = 50 << 20
LOOPBACK = "127.0.0.1"
# Topics the fuzzed requests name. kio_values.sample names everything "s" and asks for
# partition 1; "s" is compacted with a small segment size and recompresses to gzip, so
# stored garbage meets every path that looks inside batches.
FUZZ_TOPICS = {
    "s": {"cleanup.policy": "compact", "compression.type": "gzip", "segment.bytes": "65536"},
    "t": {"message.timestamp.type": "LogAppendTime"},
}
PRODUCE, FETCH, LIST_OFFSETS, DELETE_TOPICS = 0, 1, 2, 20
# The well-behaved producer's topic keeps only its last few MiB (each round is read back
# at once), and retention runs every second: RSS counts the log's mapped pages, which
# would otherwise grow with the minutes of traffic, not with any leak.
GOOD_TOPIC = {"segment.bytes": str(1 << 20), "retention.bytes": str(4 << 20)}
BROKER_ENV = {"PORTASK_STORAGE_RETENTION_CHECK_MS": "1000"}

SERVED = sorted(
    (api.key, version)
    for api in registry.APIS.values()
    for version in range(api.min_version, api.max_version + 1)
)


@dataclasses.dataclass(frozen=True)
class Memory:
    """The broker's resident memory (/proc/PID/status): all of it, as the limit applies
    to, and its anonymous (heap, buffers) and file-backed (mapped segments) parts, to
    tell a leak from page cache."""

    rss: int
    anon: int
    file: int

    @classmethod
    def of(cls, pid: int) -> Memory:
        status = Path(f"/proc/{pid}/status").read_text()

        def field(name: str) -> int:
            found = re.search(rf"^{name}:\s+(\d+) kB$", status, re.MULTILINE)
            return int(found.group(1)) * 1024 if found else 0

        return cls(field("VmRSS"), field("RssAnon"), field("RssFile"))

    def __str__(self) -> str:
        return f"{self.rss >> 20} MiB (anon {self.anon >> 20}, file {self.file >> 20})"


# -- what the fuzzers send ------------------------------------------------------------


def _kafka_request(key: int, version: int, correlation_id: int, rng: random.Random) -> bytes:
    """A valid framed request: kio's sample, or for Produce/ListOffsets/Fetch one aimed at a
    fuzz topic (Produce with a real record batch, whose records may be garbage behind a
    correct CRC)."""
    request = _sample(key, version)
    if key in (PRODUCE, FETCH, LIST_OFFSETS):
        topic = rng.choice(sorted(FUZZ_TOPICS))
        request = _aimed(request, key, topic, rng.randint(0, 1), rng)
    return encode_request(request, correlation_id, "fuzz")


def _sample(key: int, version: int) -> Any:
    """kio_values' valid request, DeleteTopics aimed away from "s" (which must keep its
    configs: Metadata would auto-create it again without them)."""
    request = sample(registry.schema(key, version).request_type)
    if key != DELETE_TOPICS:
        return request
    if hasattr(request, "topic_names"):
        return dataclasses.replace(request, topic_names=("doomed",))
    return dataclasses.replace(
        request, topics=(dataclasses.replace(request.topics[0], name="doomed"),))


def _aimed(request: Any, key: int, topic: str, partition: int, rng: random.Random) -> Any:
    if key == PRODUCE:
        rs = [Record(f"k{rng.randint(0, 9)}".encode(), rng.randbytes(rng.randint(0, 200)),
                     ((b"h", b"v"),), rng.randint(0, 1000)) for _ in range(rng.randint(1, 5))]
        if request.__version__ < 3:  # a magic 0/1 message set (kafka-python's encoder)
            records = _message_set(rs, 0 if request.__version__ < 2 else 1, rng)
        else:
            records = batch(rs, rng.choice((NONE, NONE, SNAPPY, LZ4, ZSTD)))
            if rng.random() < 0.5:  # garbage behind a correct CRC: reaches the readers
                records = fix_checksums(mutate(records, rng.randint))
        topic_data = request.topic_data[0]
        part = dataclasses.replace(topic_data.partition_data[0], index=partition, records=records)
        txn = {"transactional_id": None} if request.__version__ >= 3 else {}
        return dataclasses.replace(
            request, acks=rng.choice((-1, 1, 0)), **txn,
            topic_data=(dataclasses.replace(topic_data, name=topic, partition_data=(part,)),))
    topics = request.topics
    first = topics[0]
    parts = first.partitions
    if key == LIST_OFFSETS:  # by timestamp: the path that reads records of stored batches
        part = dataclasses.replace(parts[0], partition_index=partition,
                                   timestamp=rng.choice((0, 1, 1_767_225_600_000, -1, -2)))
    else:
        part = dataclasses.replace(parts[0], partition=partition, fetch_offset=0)
    if hasattr(first, "topic"):  # Fetch names the topic "topic" up to v12
        first = dataclasses.replace(first, topic=topic, partitions=(part,))
    elif hasattr(first, "name"):
        first = dataclasses.replace(first, name=topic, partitions=(part,))
    else:  # Fetch v13+ names topics by id; kio's sample id names none
        first = dataclasses.replace(first, partitions=(part,))
    return dataclasses.replace(request, topics=(first,))


def _message_set(rs: list[Record], magic: int, rng: random.Random) -> bytes:
    builder = LegacyRecordBatchBuilder(magic, rng.choice((NONE, NONE, SNAPPY, LZ4)), 1 << 20)
    for offset, r in enumerate(rs):
        builder.append(offset, 1_767_225_600_000 + r.ts_delta if magic else None, r.key, r.value)
    data = bytes(builder.build())
    return mutate(data, rng.randint) if rng.random() < 0.5 else data


def _kafka_mutant(rng: random.Random, donors: list[bytes]) -> bytes:
    key, version = rng.choice(SERVED) if rng.random() < 0.6 else (
        rng.choice((PRODUCE, PRODUCE, FETCH, LIST_OFFSETS)), None)
    if version is None:
        api = registry.APIS[key]
        version = rng.randint(api.min_version, api.max_version)
    framed = _kafka_request(key, version, rng.randint(0, 2**31 - 1), rng)
    donors.append(framed)
    roll = rng.random()
    if roll < 0.15:
        return framed
    if roll < 0.65:  # the body lies, the size prefix is true
        body = mutate(framed[4:], rng.randint, donors[-8:])
        return struct.pack(">i", len(body)) + body
    return mutate(framed, rng.randint, donors[-8:])


def _amqp_mutant(rng: random.Random, conn_id: int) -> bytes:
    frames = session(suffix=f"-fz{conn_id}", exclusive=True)
    roll = rng.random()
    if roll < 0.1:
        return b"".join(frames)
    if roll < 0.6:  # one frame's payload lies, its size is true
        at = rng.randint(1, len(frames) - 1) if rng.random() < 0.7 else rng.randint(
            FIRST_PUBLISH, FIRST_PUBLISH + 8)
        payload = mutate(frames[at][7:-1], rng.randint, frames)
        return b"".join(with_payload(frames, at, payload))
    return mutate(b"".join(frames), rng.randint, frames)


# -- fuzzer and client threads ----------------------------------------------------------


class Run:
    """What the threads share: the deadline, counters, and what went wrong."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.internal_errors: Counter[str] = Counter()

    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)
        self.stop.set()


def _converse(port: int, data: bytes, run: Run, stall: float = 0.0) -> bytes:
    """Send ``data`` and read the answers until the broker closes or falls quiet; with
    ``stall``, send only part of it, stay silent that long and hang up. Bounded in time
    and bytes."""
    received = bytearray()
    with socket.create_connection((LOOPBACK, port), timeout=2) as sock:
        sock.settimeout(0.05)
        try:
            if stall:
                sock.sendall(data[: len(data) // 2])
                time.sleep(stall)
                return b""
            sock.sendall(data)
            while len(received) < 16 << 20 and not run.stop.is_set():
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                received += chunk
        except (TimeoutError, ConnectionError):
            pass  # quiet (waiting for more) or reset: both are the broker's right
    return bytes(received)


def _stall(rng: random.Random) -> float:
    """One connection in ten stalls mid-request for up to 0.3 s, then hangs up."""
    return rng.uniform(0.01, 0.3) if rng.random() < 0.1 else 0.0


def _kafka_fuzzer(port: int, seed: int, run: Run) -> None:
    rng = random.Random(seed)
    donors: list[bytes] = []
    while run.running():
        data = b"".join(_kafka_mutant(rng, donors) for _ in range(rng.randint(1, 6)))
        del donors[:-32]
        _converse(port, data, run, _stall(rng))
        run.count("kafka connections")


_CONNECTION_CLOSE = struct.Struct(">HHH")


def _amqp_fuzzer(port: int, seed: int, run: Run) -> None:
    rng = random.Random(seed)
    conn_id = 0
    while run.running():
        conn_id += 1
        replies = _converse(port, _amqp_mutant(rng, seed * 1_000_000 + conn_id), run,
                            _stall(rng))
        run.count("amqp connections")
        pos = 0
        while len(replies) - pos >= 8:  # find Connection.Close frames and their codes
            kind, channel, size = FRAME_HEAD.unpack_from(replies, pos)
            payload = replies[pos + 7 : pos + 7 + size]
            if kind == 1 and channel == 0 and payload[:4] == b"\x00\x0a\x00\x32":
                code = _CONNECTION_CLOSE.unpack_from(payload, 0)[2]
                run.count(f"amqp closed with {code}")
                if code == 541:
                    text = payload[7 : 7 + payload[6]].decode("utf-8", "replace")
                    with run.lock:
                        run.internal_errors[text] += 1
            pos += 8 + size


def _kafka_client(port: int, topic: str, run: Run) -> None:
    """Produce rounds of messages with acks=all, consume each round back, compare."""
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap(port), "acks": "all", "linger.ms": 2,
                         "message.timeout.ms": 20_000,
                         "error_cb": lambda e: errors.append(f"producer: {e}")})
    consumer = Consumer({"bootstrap.servers": bootstrap(port), "group.id": topic,
                         "enable.auto.commit": False,
                         "error_cb": lambda e: errors.append(f"consumer: {e}")})
    consumer.assign([TopicPartition(topic, 0, 0)])
    rng = random.Random(topic)
    sent = 0
    try:
        while run.running() and not errors:
            expected = []
            for i in range(sent, sent + 20):
                value = rng.randbytes(rng.randint(0, 4_000))
                expected.append((f"k{i}".encode(), value, [("i", str(i).encode())]))

                def delivered(err: Any, msg: Any) -> None:
                    if err is not None:
                        errors.append(f"delivery failed: {err}")

                producer.produce(topic, value=value, key=f"k{i}".encode(), partition=0,
                                 headers=[("i", str(i).encode())], on_delivery=delivered)
            if producer.flush(30) != 0:
                errors.append("producer: messages not delivered within 30 s")
                break
            got = []
            until = time.monotonic() + 30
            while len(got) < len(expected) and time.monotonic() < until:
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                if msg.error():
                    errors.append(f"consumer: {msg.error()}")
                    break
                got.append(msg)
            if len(got) != len(expected):
                errors.append(f"consumer: {len(got)} of {len(expected)} messages came back")
                break
            for offset, (msg, (key, value, headers)) in enumerate(zip(got, expected, strict=True),
                                                                   start=sent):
                if (msg.offset(), msg.key(), msg.value(), msg.headers()) != (
                        offset, key, value, headers):
                    errors.append(f"message at offset {offset} came back changed")
                    break
            sent += len(expected)
            run.count("kafka messages checked", len(expected))
    except Exception as exc:  # any client-side exception is what this test looks for
        errors.append(f"kafka client: {exc!r}")
    finally:
        consumer.close()
    for error in errors:
        run.error(error)


def _amqp_client(port: int, queue: str, run: Run) -> None:
    """Publish rounds with confirms (persistent, mandatory), get each back, compare, ack."""
    rng = random.Random(queue)
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            LOOPBACK, port, heartbeat=0, blocked_connection_timeout=30, socket_timeout=30))
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True)
        sent = 0
        while run.running():
            expected = []
            for i in range(sent, sent + 20):
                body = rng.randbytes(rng.randint(0, 4_000))
                props = pika.BasicProperties(delivery_mode=2, headers={"i": i},
                                             content_type="application/octet-stream")
                # Raises on nack or return: a confirm is the broker's word it has it.
                channel.basic_publish("", queue, body, props, mandatory=True)
                expected.append((body, i))
            for body, i in expected:
                method, props, got = channel.basic_get(queue)
                if method is None or (got, props.headers) != (body, {"i": i}):
                    run.error(f"amqp: message {i} did not come back intact")
                    return
                channel.basic_ack(method.delivery_tag)
            if channel.basic_get(queue)[0] is not None:
                run.error("amqp: an unexpected message in the queue")
                return
            sent += len(expected)
            run.count("amqp messages checked", len(expected))
        connection.close()
    except Exception as exc:  # any client-side exception is what this test looks for
        run.error(f"amqp client: {exc!r}")


# -- the broker side ---------------------------------------------------------------------


def _warm_up(broker: BrokerProcess) -> None:
    """One valid request of every served version and one valid AMQP session, so that what
    the broker builds on first use (kio's readers, per-API state) is in the baseline."""
    for n, (key, version) in enumerate(SERVED):
        request = _sample(key, version)  # its Produce has acks=1: every request is answered
        # A connection each: some requests may only come first (SASL) or close it.
        with socket.create_connection((LOOPBACK, broker.kafka_port), timeout=10) as sock:
            sock.sendall(encode_request(request, n, "warm-up"))
            head = sock.recv(4, socket.MSG_WAITALL)
            if len(head) == 4:
                sock.recv(struct.unpack(">i", head)[0], socket.MSG_WAITALL)
    _converse(broker.amqp_port, b"".join(session(suffix="-warm", exclusive=True)), Run(10))


def _partitions(broker: BrokerProcess) -> int:
    return sum(1 for _ in (broker.data_dir / "logs" / "topics").iterdir())


def _tracebacks(log: str) -> list[str]:
    """Each traceback in the broker's log, with the log line that introduced it."""
    lines = log.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = i + 1
            while end < len(lines) and not re.match(r"\d{4}-\d\d-\d\dT", lines[end]):
                end += 1
            out.append("\n".join(lines[max(i - 1, 0) : end]))
    return out


def _start(tmp_path: Path) -> BrokerProcess:
    return start_broker(tmp_path / "data", env=BROKER_ENV)


def _threads(targets: list[tuple[Callable[..., None], tuple[Any, ...]]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=t, args=a, daemon=True) for t, a in targets]
    for thread in threads:
        thread.start()
    return threads


# A fuzzing or client thread that dies must fail the test, not pass it with a warning:
# a crashed thread means part of the run silently stopped.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_broker_survives_mutated_frames_while_clients_keep_working(
    tmp_path: Path, fuzz_seconds: float, fuzz_seed: int,
) -> None:
    seconds, seed = fuzz_seconds, fuzz_seed
    started = time.monotonic()
    broker = _start(tmp_path)
    try:
        for name, config in FUZZ_TOPICS.items():
            create_topic(broker.kafka_port, name, partitions=2, config=config)
        good = f"fuzz-good-{uuid.uuid4().hex[:8]}"
        create_topic(broker.kafka_port, good, partitions=1, config=GOOD_TOPIC)
        _warm_up(broker)
        before = Memory.of(broker.proc.pid)
        partitions_before = _partitions(broker)
        setup_s = time.monotonic() - started
        run = Run(seconds)
        threads = _threads([
            (_kafka_client, (broker.kafka_port, good, run)),
            (_amqp_client, (broker.amqp_port, good, run)),
            (_kafka_fuzzer, (broker.kafka_port, seed, run)),
            (_kafka_fuzzer, (broker.kafka_port, seed + 1, run)),
            (_amqp_fuzzer, (broker.amqp_port, seed + 2, run)),
            (_amqp_fuzzer, (broker.amqp_port, seed + 3, run)),
        ])
        samples = []  # RSS over the run, for the summary: a leak shows as a steady climb
        next_sample = time.monotonic()
        while run.running() and broker.proc.poll() is None:
            if time.monotonic() >= next_sample:
                samples.append(Memory.of(broker.proc.pid).rss >> 20)
                next_sample += max(seconds / 10, 1)
            time.sleep(0.2)
        run.stop.set()
        for thread in threads:
            thread.join(60)
        alive = broker.proc.poll() is None
        after = Memory.of(broker.proc.pid) if alive else Memory(0, 0, 0)
        new_partitions = _partitions(broker) - partitions_before
    finally:
        if broker.proc.poll() is None:
            broker.stop()
    log = broker.stderr_text()
    tracebacks = _tracebacks(log)
    summary = (f"seed {seed}, {seconds:.0f} s after {setup_s:.1f} s of setup: "
               f"{dict(run.counts)}; RSS {before} -> {after}, samples {samples} MiB, "
               f"{new_partitions} partitions created; "
               f"541 texts: {dict(run.internal_errors)}")
    print(summary)
    assert alive, f"the broker died ({broker.proc.returncode}): {log[-3000:]}\n{summary}"
    assert not [t for t in threads if t.is_alive()], f"a thread did not finish\n{summary}"
    assert not run.errors, f"well-behaved clients saw errors: {run.errors[:5]}\n{summary}"
    assert not tracebacks, f"tracebacks in the broker's log:\n{tracebacks[0]}\n...\n{summary}"
    assert after.rss - before.rss <= RSS_GROWTH_LIMIT, f"RSS grew too much\n{summary}"
    assert run.counts["kafka messages checked"] and run.counts["amqp messages checked"], summary
    assert run.counts["kafka connections"] and run.counts["amqp connections"], summary
