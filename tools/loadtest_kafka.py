"""Kafka load test: confluent-kafka (librdkafka) producers and consumers in separate processes.

Every message value starts with its send time (8 bytes, time.time_ns(), taken when the
application hands the message to the client, so the producer's linger is part of the
latency, as an application would see it); consumers subtract it from the time
``consume()`` returned the message. Producers and consumers run on the same host, so
both read the same CLOCK_REALTIME.

Modes:
  default          producers and consumers together; consumers start at the end (latest)
                   of every partition before the first message is sent
  --consumers 0    produce only (the produce throughput figure; it also fills a backlog)
  --consume-only   no producers; consumers read the topic's backlog from the beginning to
                   the end offsets seen at start (the pure consume figure)
  --mock-broker    the same run against librdkafka's in-memory mock broker (C, in a
                   separate process) instead of --bootstrap: the load generator's own
                   ceiling on this machine

Consumers use assign() with enable.auto.commit=false, so the run needs no consumer
group; producers are idempotent only with --idempotent (acks=all, as librdkafka
requires), to measure what sequence checking costs the broker. The
broker's CPU (--broker-pid, found automatically for a local broker) and the load
generator's own CPU are reported with each run: 100% is one core.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import queue
import resource
import struct
import sys
import time
import traceback
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from loadtest_common import CpuMeter, Result, listening_pid, progress, report

_TS = struct.Struct(">Q")
# Producers hand librdkafka this many messages between checks of the clock and stop flag.
_PRODUCE_CHUNK = 1000


def _cpu_seconds() -> float:
    # RUSAGE_SELF covers every thread of the process, librdkafka's included.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _client_conf(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "bootstrap.servers": args.bootstrap,
        # librdkafka leaves Nagle on by default; with it, small requests of a paced
        # latency run can wait for the previous segment's ACK.
        "socket.nagle.disable": True,
        "log_level": 3,
    }


def producer_conf(args: argparse.Namespace) -> dict[str, Any]:
    conf = _client_conf(args) | {
        "acks": args.acks,
        "compression.type": args.compression,
        "linger.ms": args.linger_ms,
        "enable.idempotence": args.idempotent,
        # Only failures come back to Python: a callback per message would cost the
        # producer process more CPU than the produce() call itself.
        "delivery.report.only.error": True,
    }
    if args.batch_size:
        conf["batch.size"] = args.batch_size
    return conf


def consumer_conf(args: argparse.Namespace) -> dict[str, Any]:
    return _client_conf(args) | {
        "group.id": "portask-loadtest",  # required by the client; no group request is made
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 100,
        # librdkafka pauses fetching for fetch.queue.backoff.ms (1 s by default) whenever
        # its local queue is full; with 1 KiB messages that is most of the time in a
        # backlog run and would measure the pause instead of the broker.
        "fetch.queue.backoff.ms": 5,
        "max.partition.fetch.bytes": 4 << 20,
    }


# -- setup ---------------------------------------------------------------------------


def prepare_topic(args: argparse.Namespace) -> int:
    """Create the topic if asked; return its partition count."""
    if args.create and not args.mock_broker:
        admin = AdminClient(_client_conf(args))
        future = admin.create_topics(
            [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)]
        )[args.topic]
        try:
            future.result(15)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            print(f"loadtest: topic {args.topic} exists; using it as it is", file=sys.stderr)
    probe = Producer(_client_conf(args))
    # A metadata request for the topic; the mock broker (and a broker that
    # auto-creates topics) creates it here.
    deadline = time.monotonic() + 15
    while True:
        meta = probe.list_topics(args.topic, timeout=5).topics.get(args.topic)
        if meta is not None and meta.error is None and meta.partitions:
            return len(meta.partitions)
        if time.monotonic() > deadline:
            raise SystemExit(f"loadtest: topic {args.topic} not available: "
                             f"{meta.error if meta else 'no metadata'} (use --create?)")
        time.sleep(0.2)


def start_mock_broker(ctx: Any) -> tuple[Any, str]:
    """librdkafka's mock cluster in its own process: a C broker keeping a small in-memory log.

    It does the least a broker can do (append, serve fetches), so what the load
    generator reaches against it is the ceiling of the load generator on this machine.
    """
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_mock_broker, args=(child,), daemon=True)
    proc.start()
    if not parent.poll(15):
        raise SystemExit("loadtest: the mock broker did not start")
    return proc, parent.recv()


def _mock_broker(conn: Any) -> None:
    holder = Producer({"test.mock.num.brokers": 1, "log_level": 3})
    broker = next(iter(holder.list_topics(timeout=10).brokers.values()))
    conn.send(f"{broker.host}:{broker.port}")
    with contextlib.suppress(EOFError):
        conn.recv()  # serve until the parent terminates this process or exits


# -- workers -------------------------------------------------------------------------


def _worker(kind: str, body: Any, results: Any, *args: Any) -> None:
    """Run a worker; any failure reaches the parent instead of leaving it waiting."""
    try:
        body(*args)
    except BaseException:  # reported to the parent, which exits non-zero
        results.put(("error", kind, traceback.format_exc()))


def producer(args: argparse.Namespace, index: int, count: Any, ready: Any, go: Any,
             results: Any) -> None:
    errors = 0

    def on_error(err: KafkaError, _msg: Any) -> None:
        nonlocal errors
        errors += 1
        if errors == 1:
            print(f"loadtest: producer {index}: {err}", file=sys.stderr)

    conf = producer_conf(args) | {"on_delivery": on_error}
    p = Producer(conf)
    p.list_topics(args.topic, timeout=10)  # connect before the clock starts
    filler = payload_filler(args.message_size)
    # Uncompressed bytes are opaque to the broker: one body will do, and costs least.
    pool, stride = payload_pool(args.message_size) if args.compression != "none" else (b"", 0)
    body = len(filler)
    span = max(len(pool) - body, 1)
    at = 0
    limit = args.count // args.producers + (index < args.count % args.producers)
    rate = args.rate / args.producers if args.rate else 0.0
    ready.release()
    go.wait()
    cpu0 = _cpu_seconds()
    start = time.monotonic()
    deadline = start + args.duration
    produce, poll, topic = p.produce, p.poll, args.topic
    pack, now_ns, monotonic = _TS.pack, time.time_ns, time.monotonic
    sent = 0
    while True:
        now = monotonic()
        if (limit and sent >= limit) or (not limit and now >= deadline):
            break
        if rate:
            # Paced: send what is due now, then sleep briefly; timestamps are taken
            # when each message is really handed over.
            n = int((now - start) * rate) - sent
            if n <= 0:
                poll(0)
                time.sleep(0.0002)
                continue
            n = min(n, _PRODUCE_CHUNK)
        else:
            n = _PRODUCE_CHUNK
        if limit:
            n = min(n, limit - sent)
        for _ in range(n):
            if pool:
                at = (at + stride) % span
                filler = pool[at : at + body]
            while True:
                try:
                    produce(topic, pack(now_ns()) + filler)
                    break
                except BufferError:  # local queue full: wait for the broker to take some
                    poll(0.001)
        sent += n
        poll(0)
        count.value = sent
    unsent = p.flush(30)
    elapsed = monotonic() - start
    acked = sent - unsent - errors
    count.value = acked
    results.put(("pub", acked, elapsed, _cpu_seconds() - cpu0))


def payload_filler(size: int) -> bytes:
    """Bytes after the timestamp: hex text, so compressors see ~2:1 data, not all zeros."""
    body = max(size - _TS.size, 0)
    return os.urandom(body // 2 + 1).hex().encode()[:body]


def payload_pool(size: int) -> tuple[bytes, int]:
    """16 MiB of random hex text to slice message bodies from, and the slice stride.

    With compression on, one repeated body would shrink a whole batch to its
    timestamps and measure nothing; slices of a pool larger than any batch (and any
    codec's window) make every body different and ~2:1 compressible.
    """
    body = max(size - _TS.size, 0)
    return os.urandom(8 << 20).hex().encode(), body + 4099


def consumer(args: argparse.Namespace, index: int, partitions: list[int], count: Any,
             ready: Any, go: Any, stop: Any, results: Any) -> None:
    c = Consumer(consumer_conf(args))
    expected = 0
    assignment = []
    for p in partitions:
        low, high = c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
        if args.from_beginning:
            assignment.append(TopicPartition(args.topic, p, OFFSET_BEGINNING))
            expected += high - low
        else:
            # A concrete offset, not OFFSET_END: nothing sent after "go" can be skipped.
            assignment.append(TopicPartition(args.topic, p, high))
    c.assign(assignment)
    if args.consume_only and args.count:
        expected = min(expected, args.count // args.consumers)
    sample_every = args.latency_sample or (1 if args.rate and args.rate <= 200_000 else 16)
    latencies: list[float] = []
    delivered = errors = 0
    first = last = 0.0
    ready.release()
    go.wait()
    cpu0 = _cpu_seconds()
    consume, now_ns, unpack = c.consume, time.time_ns, _TS.unpack_from
    next_sample = 0
    while True:
        if args.consume_only:
            if delivered >= expected:
                break
        elif stop.is_set():
            break
        # consume(n, timeout) waits for n messages or the timeout, whichever is first:
        # take what is there without waiting, and block only for the first message.
        msgs = consume(10_000, 0) or consume(1, 0.1)
        if not msgs:
            if args.consume_only and stop.is_set():
                break  # the parent gave up waiting (e.g. the backlog shrank)
            continue
        received = now_ns()
        n = len(msgs)
        for m in msgs:
            if m.error() is not None:
                errors += 1
                n -= 1
                if errors == 1:
                    print(f"loadtest: consumer {index}: {m.error()}", file=sys.stderr)
        if not first:
            first = time.monotonic()
        last = time.monotonic()
        # Latency from every sample_every-th message of the whole stream; a backlog's
        # messages were sent before the run, so their age is not a latency.
        while not args.from_beginning and next_sample < delivered + n:
            m = msgs[next_sample - delivered]
            value = m.value()
            if m.error() is None and value is not None and len(value) >= _TS.size:
                latencies.append((received - unpack(value)[0]) / 1000)
            next_sample += sample_every
        delivered += n
        count.value = delivered
    cpu = _cpu_seconds() - cpu0
    c.close()
    results.put(("con", delivered, max(last - first, 1e-9), cpu, latencies))


# -- the run -------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Result:
    ctx = mp.get_context("fork")
    mock = None
    if args.mock_broker:
        mock, args.bootstrap = start_mock_broker(ctx)
        args.broker_pid = mock.pid
    n_partitions = prepare_topic(args)
    if args.broker_pid is None:
        args.broker_pid = _local_broker_pid(args.bootstrap)
    if args.consumers > n_partitions:
        print(f"loadtest: {args.consumers} consumers for {n_partitions} partitions: "
              f"{args.consumers - n_partitions} will be idle", file=sys.stderr)
    ready = ctx.Semaphore(0)
    go, stop = ctx.Event(), ctx.Event()
    results = ctx.Queue()
    pub_counts = [ctx.Value("q", 0, lock=False) for _ in range(args.producers)]
    con_counts = [ctx.Value("q", 0, lock=False) for _ in range(args.consumers)]
    procs = [
        ctx.Process(target=_worker, args=(
            "consumer", consumer, results, args, i,
            [p for p in range(n_partitions) if p % args.consumers == i],
            con_counts[i], ready, go, stop, results))
        for i in range(args.consumers)
    ]
    procs += [
        ctx.Process(target=_worker, args=(
            "producer", producer, results, args, i, pub_counts[i], ready, go, results))
        for i in range(args.producers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        if not ready.acquire(timeout=30):
            _abort(procs, "workers did not connect within 30 s")
    broker_cpu = CpuMeter(args.broker_pid)
    broker_cpu.sample()
    go.set()
    started = time.monotonic()
    collected: list[tuple[Any, ...]] = []
    state = {"last_count": -1, "last_change": started}
    # CPU figures cover the samples from just before the first message moved to the
    # last one where the counts still changed: not connection set-up or the drain wait.
    active = {"first": 0, "last": 0, "moved": 0}

    def collect() -> None:
        try:
            while True:
                item = results.get_nowait()
                if item[0] == "error":
                    _abort(procs, f"{item[1]} failed:\n{item[2]}")
                collected.append(item)
        except queue.Empty:
            pass

    def done() -> bool:
        collect()
        broker_cpu.sample()
        moved = sum(read())
        if moved != active["moved"]:
            if not active["moved"]:
                active["first"] = len(broker_cpu.samples) - 2
            active["moved"], active["last"] = moved, len(broker_cpu.samples) - 1
        now = time.monotonic()
        pubs = [r for r in collected if r[0] == "pub"]
        delivered = sum(c.value for c in con_counts)
        if delivered != state["last_count"]:
            state["last_count"], state["last_change"] = delivered, now
        if args.producers and len(pubs) == args.producers and not stop.is_set():
            acked = sum(r[1] for r in pubs)
            # Consumers are done when they have everything acknowledged, or when
            # nothing has arrived for a while (acks=0 may lose messages).
            if delivered >= acked or now - state["last_change"] > args.drain_timeout:
                stop.set()
        if args.consume_only and now - state["last_change"] > args.drain_timeout:
            stop.set()
        if any(not p.is_alive() and p.exitcode for p in procs):
            _abort(procs, "a worker died")
        return len(collected) == len(procs)

    def read() -> tuple[int, int]:
        return sum(c.value for c in pub_counts), sum(c.value for c in con_counts)

    if args.json:
        while not done():
            time.sleep(0.25)
    else:
        progress(float(args.duration), read, done)
    broker_cpu.sample()
    for proc in procs:
        proc.join(timeout=10)
    if mock is not None:
        mock.terminate()
    pubs = [r for r in collected if r[0] == "pub"]
    cons = [r for r in collected if r[0] == "con"]
    published = sum(r[1] for r in pubs)
    delivered = sum(r[1] for r in cons)
    client_cpu = sum(r[3] for r in pubs + cons)
    resources = broker_cpu.summary("broker", active["first"], active["last"] or None)
    resources["broker_pid"] = args.broker_pid
    window = resources.get("cpu_window_s") or max(time.monotonic() - started, 1e-9)
    resources["client_cpu_pct"] = round(100 * client_cpu / window, 1)
    moved = max(published, delivered)
    if moved and "broker_cpu_seconds" in resources:
        resources["broker_cpu_us_per_msg"] = round(
            resources["broker_cpu_seconds"] / moved * 1e6, 2)
    if moved:
        resources["client_cpu_us_per_msg"] = round(client_cpu / moved * 1e6, 2)
    if "machine_cpu_pct" in resources:
        # What neither the broker nor this tool used: other work on a shared machine
        # that makes the figures noisy (the parent process itself counts here, ~1%).
        resources["other_cpu_pct"] = round(
            resources["machine_cpu_pct"] - resources.get("broker_cpu_pct", 0.0)
            - resources["client_cpu_pct"], 1)
    return Result(
        target=args.label or ("librdkafka mock broker" if args.mock_broker else args.bootstrap),
        seconds=max((r[2] for r in pubs), default=0.0),
        published=published,
        delivered=delivered,
        message_bytes=args.message_size,
        deliver_seconds=max((r[2] for r in cons), default=0.0),
        latencies_us=[lat for r in cons for lat in r[4]],
        settings=vars(args) | {"partitions": n_partitions},
        resources=resources,
    )


def _local_broker_pid(bootstrap: str) -> int | None:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if host.strip("[]") not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", ""):
        return None
    return listening_pid(int(port))


def _abort(procs: list[Any], why: str) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    raise SystemExit(f"loadtest: {why}")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="loadtest.py kafka", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--topic", default="loadtest")
    p.add_argument("--create", action="store_true",
                   help="create the topic with --partitions (an existing one is kept)")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--producers", type=int, default=1, help="producer processes")
    p.add_argument("--consumers", type=int, default=1,
                   help="consumer processes; partitions are dealt out between them")
    p.add_argument("--message-size", type=int, default=1024, help="value bytes (>= 8)")
    p.add_argument("--count", type=int, default=0,
                   help="messages to produce in total (overrides --duration)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to produce")
    p.add_argument("--acks", default="1", choices=("0", "1", "all", "-1"))
    p.add_argument("--idempotent", action="store_true",
                   help="idempotent producers (librdkafka then uses acks=all)")
    p.add_argument("--compression", default="none",
                   choices=("none", "gzip", "snappy", "lz4", "zstd"))
    p.add_argument("--linger-ms", type=float, default=5.0)
    p.add_argument("--batch-size", type=int, default=0,
                   help="producer batch.size bytes (0 = librdkafka's default, 1 MB)")
    p.add_argument("--rate", type=int, default=0,
                   help="total produce rate, msg/s, for latency runs (0 = as fast as possible)")
    p.add_argument("--consume-only", action="store_true",
                   help="no producers: consume the existing backlog from the beginning")
    p.add_argument("--from-beginning", action="store_true",
                   help="consumers start at the beginning instead of the end")
    p.add_argument("--latency-sample", type=int, default=0,
                   help="take every Nth message's latency (0 = all when --rate <= 200k, "
                        "else every 16th)")
    p.add_argument("--drain-timeout", type=float, default=5.0,
                   help="stop consumers after this many seconds without a message once "
                        "producers are done")
    p.add_argument("--broker-pid", type=int, default=None,
                   help="broker process whose CPU to report (default: the local process "
                        "listening on the bootstrap port, if any)")
    p.add_argument("--mock-broker", action="store_true",
                   help="run against librdkafka's mock broker: the tool's own ceiling")
    p.add_argument("--label", default="", help="name of the target in the report")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    args = p.parse_args(argv)
    if args.consume_only:
        args.producers, args.from_beginning = 0, True
    if args.message_size < _TS.size:
        p.error("--message-size must hold the 8-byte timestamp")
    if args.producers < 0 or args.consumers < 0 or args.producers + args.consumers == 0:
        p.error("need at least one producer or consumer")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    result = run(args)
    report([result], args.json)
    moved = result.delivered if args.consumers else result.published
    return 0 if moved else 1
