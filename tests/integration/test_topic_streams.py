"""One log, two protocols: Kafka topics read and written as AMQP stream queues, with real
clients of both protocols against one broker (issue 17)."""

from __future__ import annotations

import datetime
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aio_pika
import pika
import pika.exceptions
import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaProducer
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from portask.storage.log import Log, LogConfig
from tests.broker_process import BrokerProcess, start_broker
from tests.integration.amqp.rawclient import RawClient
from tests.integration.kafka.clients import bootstrap, create_topic


def amqp(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))


def produce(broker: BrokerProcess, topic: str, records: list[dict[str, Any]],
            **config: Any) -> None:
    producer = Producer({"bootstrap.servers": bootstrap(broker.kafka_port), "linger.ms": 5,
                         **config})
    for record in records:
        producer.produce(topic, **record)
    assert producer.flush(10) == 0


def read_stream(broker: BrokerProcess, queue: str, offset: Any, expect: int,
                wait: float = 5.0) -> list[tuple[str, Any, bytes, int]]:
    """(routing key, properties, body, x-stream-offset) of up to ``expect`` deliveries."""
    conn = amqp(broker)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=50)
    got: list[tuple[str, Any, bytes, int]] = []

    def on_message(channel: Any, method: Any, props: Any, body: bytes) -> None:
        got.append((method.routing_key, props, body, props.headers["x-stream-offset"]))
        channel.basic_ack(method.delivery_tag)

    arguments = {} if offset is None else {"x-stream-offset": offset}
    ch.basic_consume(queue, on_message, arguments=arguments)
    deadline = time.monotonic() + wait
    while len(got) < expect and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    conn.process_data_events(0.1)
    conn.close()
    return got


@pytest.fixture
def topic(broker: BrokerProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"t-{request.node.name[:40].replace('[', '-').replace(']', '')}"
    create_topic(broker.kafka_port, name, partitions=1)
    yield name


def test_kafka_records_read_as_a_stream_queue_with_the_kafka_offsets(
    broker: BrokerProcess, topic: str
) -> None:
    produce(broker, topic, [
        {"key": b"k1", "value": b"v1", "headers": [("h", b"x"), ("bin", b"\xff\x00")],
         "timestamp": 1_700_000_000_123},
        {"key": b"\xff\xfe", "value": b"v2"},
        {"key": None, "value": None},
    ], **{"compression.type": "lz4"})
    got = read_stream(broker, topic, "first", 3)
    assert [g[3] for g in got] == [0, 1, 2]
    (rk1, p1, b1, _), (rk2, p2, b2, _), (rk3, p3, b3, _) = got
    assert (rk1, b1) == ("k1", b"v1")
    # Longstr values: pika gives UTF-8 ones as str, others as bytes.
    assert p1.headers["h"] == "x" and p1.headers["bin"] == b"\xff\x00"
    assert p1.timestamp == 1_700_000_000
    assert p1.headers["x-kafka-timestamp"] == 1_700_000_000_123
    assert p1.delivery_mode == 2
    # A binary key: empty routing key, the key in x-kafka-key.
    assert (rk2, b2, p2.headers["x-kafka-key"]) == ("", b"v2", b"\xff\xfe")
    # A null key and a tombstone.
    assert (rk3, b3) == ("", b"")
    assert "x-kafka-key" not in p3.headers and p3.headers["x-kafka-tombstone"] is True


def test_every_x_stream_offset_form(broker: BrokerProcess, topic: str) -> None:
    produce(broker, topic, [{"key": b"a", "value": b"v%d" % i} for i in range(3)])
    time.sleep(1.1)
    middle = datetime.datetime.now(datetime.UTC)
    time.sleep(0.1)
    produce(broker, topic, [{"key": b"a", "value": b"v%d" % i} for i in range(3, 6)])
    assert [g[3] for g in read_stream(broker, topic, "first", 6)] == list(range(6))
    assert [g[3] for g in read_stream(broker, topic, 4, 2)] == [4, 5]
    assert [g[3] for g in read_stream(broker, topic, "last", 1)] == [5]
    assert [g[3] for g in read_stream(broker, topic, middle, 3)] == [3, 4, 5]
    assert read_stream(broker, topic, "next", 1, wait=0.5) == []


def test_a_waiting_stream_consumer_gets_what_kafka_producers_write_next(
    broker: BrokerProcess, topic: str
) -> None:
    conn = amqp(broker)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    got: list[tuple[bytes, int]] = []
    ch.basic_consume(topic, lambda c, m, p, b: (got.append((b, p.headers["x-stream-offset"])),
                                                 c.basic_ack(m.delivery_tag)),
                     arguments={"x-stream-offset": "next"})
    conn.process_data_events(0.2)
    producer = KafkaProducer(bootstrap_servers=bootstrap(broker.kafka_port),
                             compression_type="gzip")
    for i in range(4):
        producer.send(topic, key=b"k", value=b"kp%d" % i)
    producer.flush(10)
    producer.close()
    deadline = time.monotonic() + 5
    while len(got) < 4 and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    conn.close()
    assert got == [(b"kp%d" % i, i) for i in range(4)]


def test_each_partition_is_a_stream_named_topic_dot_p_n(broker: BrokerProcess) -> None:
    create_topic(broker.kafka_port, "multi", partitions=3)
    for partition in range(3):
        produce(broker, "multi", [{"value": b"p%d-%d" % (partition, i), "partition": partition}
                                  for i in range(2)])
    for partition, queue in enumerate(("multi", "multi.p1", "multi.p2")):
        got = read_stream(broker, queue, "first", 2)
        assert [(g[2], g[3]) for g in got] == [(b"p%d-0" % partition, 0),
                                               (b"p%d-1" % partition, 1)]
    conn = amqp(broker)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        conn.channel().queue_delete("multi.p1")
    assert refused.value.reply_code == 403
    # A RabbitMQ client's durable stream declare finds the stream it already is.
    ok = conn.channel().queue_declare("multi", durable=True,
                                      arguments={"x-queue-type": "stream"})
    assert ok.method.message_count == 2
    conn.close()


def test_aio_pika_reads_a_topic_from_an_offset(broker: BrokerProcess, topic: str) -> None:
    import asyncio

    produce(broker, topic, [{"key": b"k%d" % i, "value": b"v%d" % i} for i in range(5)])

    async def read() -> list[tuple[str | None, bytes, int]]:
        conn = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}/")
        async with conn:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=10)
            queue = await ch.get_queue(topic, ensure=False)
            got: list[tuple[str | None, bytes, int]] = []
            async with queue.iterator(arguments={"x-stream-offset": 2}) as messages:
                async for message in messages:
                    await message.ack()
                    got.append((message.routing_key, message.body,
                                int(message.headers["x-stream-offset"])))  # type: ignore[arg-type]
                    if len(got) == 3:
                        break
            return got

    got = asyncio.run(asyncio.wait_for(read(), 10))
    assert got == [("k2", b"v2", 2), ("k3", b"v3", 3), ("k4", b"v4", 4)]


def consume_group(broker: BrokerProcess, topic: str, expect: int, group: str
                  ) -> list[tuple[int, bytes | None, bytes | None, list[Any]]]:
    consumer = Consumer({"bootstrap.servers": bootstrap(broker.kafka_port), "group.id": group,
                         "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    got: list[tuple[int, bytes | None, bytes | None, list[Any]]] = []
    deadline = time.monotonic() + 20
    while len(got) < expect and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            continue
        got.append((msg.partition(), msg.key(), msg.value(), msg.headers() or []))
    consumer.close()
    return got


def test_amqp_publishes_with_confirms_are_records_a_consumer_group_reads(
    broker: BrokerProcess,
) -> None:
    create_topic(broker.kafka_port, "orders", partitions=3,
                 config={"compression.type": "zstd"})
    conn = amqp(broker)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("orders-in", "direct", durable=True)
    ch.queue_bind("orders", "orders-in", routing_key="k0")
    ch.queue_bind("orders", "orders-in", routing_key="k1")
    sent = []
    for i in range(60):
        key = f"k{i % 2}"
        ch.basic_publish("orders-in", key, b"order-%d" % i, pika.BasicProperties(
            content_type="text/plain", message_id=f"m{i}", headers={"n": i, "s": "x"}))
        sent.append((key.encode(), b"order-%d" % i))
    # Through the default exchange with an explicit key.
    ch.basic_publish("", "orders", b"direct", pika.BasicProperties(
        headers={"x-kafka-key": "k2"}))
    sent.append((b"k2", b"direct"))
    conn.close()
    got = consume_group(broker, "orders", len(sent), "g-orders")
    assert Counter((key, value) for _p, key, value, _h in got) == Counter(sent)
    for key in (b"k0", b"k1"):
        values = [value for _p, k, value, _h in got if k == key]
        assert values == [value for k, value in sent if k == key]
        assert len({part for part, k, _v, _h in got if k == key}) == 1
    headers = dict(next(h for _p, k, v, h in got if v == b"order-3"))
    assert headers["amqp.content_type"] == b"text/plain"
    assert headers["amqp.message_id"] == b"m3"
    assert (headers["n"], headers["amqp.type.n"], headers["s"]) == (b"3", b"l", b"x")
    # And back over AMQP, through the partition the key went to: the properties and
    # the header's type as published.
    partition = next(p for p, _k, v, _h in got if v == b"order-3")
    queue = "orders" if partition == 0 else f"orders.p{partition}"
    delivered = [g for g in read_stream(broker, queue, "first", 61, wait=2)
                 if g[2] == b"order-3"]
    (_rk, props, _b, _o), = delivered
    assert (props.content_type, props.message_id, props.headers["n"]) == ("text/plain", "m3", 3)


def test_a_transaction_aborted_by_a_kafka_producer_never_reaches_amqp(
    broker: BrokerProcess, topic: str,
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap(broker.kafka_port),
                         "transactional.id": "tx-" + topic})
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce(topic, key=b"a", value=b"aborted-1")
    producer.produce(topic, key=b"a", value=b"aborted-2")
    producer.flush(10)
    producer.abort_transaction(10)
    producer.begin_transaction()
    producer.produce(topic, key=b"c", value=b"committed")
    producer.commit_transaction(10)
    got = read_stream(broker, topic, "first", 2, wait=2)
    assert [g[2] for g in got] == [b"committed"]


def test_confirmed_publishes_survive_kill_9(tmp_path: Any) -> None:
    broker = start_broker(tmp_path / "data")
    try:
        create_topic(broker.kafka_port, "durable", partitions=1)
        conn = amqp(broker)
        ch = conn.channel()
        ch.confirm_delivery()
        ch.exchange_declare("durable-in", "fanout", durable=True)
        ch.queue_bind("durable", "durable-in")
        confirmed = 0
        for i in range(200):
            ch.basic_publish("durable-in", "k", b"m%d" % i)
            confirmed += 1
        broker.proc.send_signal(signal.SIGKILL)
        broker.proc.wait(10)
    finally:
        if broker.proc.poll() is None:
            broker.stop()
    broker = start_broker(tmp_path / "data")
    try:
        got = consume_group(broker, "durable", confirmed, "g-durable")
        assert [v for _p, _k, v, _h in got] == [b"m%d" % i for i in range(confirmed)]
        # The binding to the topic's stream is durable too.
        conn = amqp(broker)
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("durable-in", "k", b"after")
        conn.close()
        assert [g[2] for g in read_stream(broker, "durable", confirmed, 1)] == [b"after"]
    finally:
        broker.stop()


def test_a_burst_of_publishes_is_written_as_few_batches_split_at_max_message_bytes(
    tmp_path: Any,
) -> None:
    # 400 confirmed publishes of 3 KiB sent in one write reach the broker in a few
    # reads; each read's publishes become one batch per partition, cut where
    # max.message.bytes (64 KiB here) would be passed. Order and every record stay.
    broker = start_broker(tmp_path / "data")
    try:
        create_topic(broker.kafka_port, "burst", partitions=1,
                     config={"max.message.bytes": str(64 * 1024)})
        client = RawClient(broker.amqp_port)
        client.handshake()
        client.send_method(1, commands.Confirm.Select())
        client.expect(commands.Confirm.SelectOk)
        publishes = []
        for i in range(400):
            body = b"%04d" % i + b"x" * 3000
            publishes.append(
                frame.marshal(commands.Basic.Publish(exchange="", routing_key="burst"), 1)
                + frame.marshal(ContentHeader(0, len(body), commands.Basic.Properties(
                    headers={"x-kafka-key": "k"})), 1)
                + frame.marshal(ContentBody(body), 1))
        client.send(b"".join(publishes))
        confirmed = 0
        while confirmed < 400:
            ack = client.expect(commands.Basic.Ack)
            confirmed = ack.delivery_tag  # type: ignore[attr-defined]
        client.sock.close()
        got = consume_group(broker, "burst", 400, "g-burst")
        assert [v[:4] for _p, _k, v, _h in got] == [b"%04d" % i for i in range(400)]
    finally:
        broker.stop()
    stored = Log.open(tmp_path / "data" / "logs" / "topics" / "burst-0",
                      LogConfig(preallocate=False))
    try:
        entries = stored.read(0, 64 << 20)
        assert sum(e.count for e in entries) == 400
        # Fewer batches than records (one per publish before), none past the limit.
        assert len(entries) < 400 // 5
        assert max(len(e.payload) for e in entries) <= 64 * 1024
    finally:
        stored.close()


def test_publishes_confirmed_before_a_kill_9_in_mid_stream_are_all_in_the_topic(
    tmp_path: Any,
) -> None:
    # pika publishes with confirms as fast as the confirms come back while the broker
    # is killed -9 under it: every publish confirmed before the kill is a record after
    # the restart, in publish order (confirms come in order, so they are a prefix).
    broker = start_broker(tmp_path / "data")
    confirmed: list[int] = []
    try:
        create_topic(broker.kafka_port, "midway", partitions=1)
        conn = amqp(broker)
        ch = conn.channel()
        ch.confirm_delivery()

        def publish() -> None:
            try:
                for i in range(100_000):
                    ch.basic_publish("", "midway", b"m%d" % i, pika.BasicProperties(
                        headers={"x-kafka-key": "k"}))
                    confirmed.append(i)
            except (pika.exceptions.AMQPError, OSError):
                return  # the broker is gone: this publish has no confirm

        publisher = threading.Thread(target=publish)
        publisher.start()
        deadline = time.monotonic() + 10
        while len(confirmed) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        _kill(broker)
        publisher.join(10)
        assert not publisher.is_alive()
    finally:
        if broker.proc.poll() is None:
            broker.stop()
    assert len(confirmed) >= 300
    broker = start_broker(tmp_path / "data")
    try:
        got = consume_group(broker, "midway", len(confirmed), "g-midway")
        assert [v for _p, _k, v, _h in got] == [b"m%d" % i for i in confirmed]
    finally:
        broker.stop()


def test_streams_follow_partitions_added_and_the_topic_deleted(broker: BrokerProcess) -> None:
    from confluent_kafka.admin import AdminClient, NewPartitions

    create_topic(broker.kafka_port, "grows", partitions=1)
    admin = AdminClient({"bootstrap.servers": bootstrap(broker.kafka_port)})
    admin.create_partitions([NewPartitions("grows", 2)])["grows"].result(10)
    produce(broker, "grows", [{"value": b"on-p1", "partition": 1}])
    assert [g[2] for g in read_stream(broker, "grows.p1", "first", 1)] == [b"on-p1"]
    conn = amqp(broker)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=5)
    cancelled: list[str] = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume("grows", lambda *a: None)
    admin.delete_topics(["grows"])["grows"].result(10)
    deadline = time.monotonic() + 5
    while not cancelled and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    assert cancelled == [tag]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
        conn.channel().queue_declare("grows.p1", passive=True)
    assert gone.value.reply_code == 404
    conn.close()


def drain(broker: BrokerProcess, queue: str, expect: int, wait: float = 8.0,
          reject: bytes | None = None) -> list[tuple[str, bytes]]:
    """(routing key, body) of up to ``expect`` messages, acked (``reject``ed if equal)."""
    conn = amqp(broker)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=20)
    got: list[tuple[str, bytes]] = []

    def on_message(channel: Any, method: Any, props: Any, body: bytes) -> None:
        got.append((method.routing_key, body))
        if body == reject:
            channel.basic_reject(method.delivery_tag, requeue=False)
        else:
            channel.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_message)
    deadline = time.monotonic() + wait
    while len(got) < expect and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    conn.process_data_events(0.2)
    conn.close()
    return got


def declare_feed(broker: BrokerProcess, topic: str) -> None:
    """A topic exchange fed by ``topic``; queue ``<topic>-work`` (dead letters to
    ``<topic>-dead``) takes keys ``k.*``."""
    conn = amqp(broker)
    ch = conn.channel()
    ch.exchange_declare(f"{topic}-dlx", "fanout", durable=True)
    ch.queue_declare(f"{topic}-dead", durable=True)
    ch.queue_bind(f"{topic}-dead", f"{topic}-dlx")
    ch.exchange_declare(f"{topic}-feed", "topic", durable=True,
                        arguments={"x-kafka-topic": topic})
    ch.queue_declare(f"{topic}-work", durable=True,
                     arguments={"x-dead-letter-exchange": f"{topic}-dlx"})
    ch.queue_bind(f"{topic}-work", f"{topic}-feed", routing_key="k.*")
    conn.close()


def test_a_topic_feeds_an_exchange_and_its_classic_queues_committed_records_only(
    broker: BrokerProcess, topic: str,
) -> None:
    declare_feed(broker, topic)
    producer = Producer({"bootstrap.servers": bootstrap(broker.kafka_port),
                         "transactional.id": "feed-" + topic})
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce(topic, key=b"k.1", value=b"aborted")
    producer.flush(10)
    producer.abort_transaction(10)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=b"k.%d" % i, value=b"v%d" % i)
    producer.produce(topic, key=b"other", value=b"unrouted")
    producer.commit_transaction(10)
    got = drain(broker, f"{topic}-work", 5, reject=b"v2")
    assert got == [(f"k.{i}", b"v%d" % i) for i in range(5)]
    assert drain(broker, f"{topic}-dead", 1) == [("k.2", b"v2")]


def test_a_feed_keeps_its_position_across_restarts(tmp_path: Any) -> None:
    broker = start_broker(tmp_path / "data")
    try:
        create_topic(broker.kafka_port, "fed", partitions=2)
        declare_feed(broker, "fed")
        produce(broker, "fed", [{"key": b"k.%d" % i, "value": b"a%d" % i} for i in range(40)])
        assert len(drain(broker, "fed-work", 40)) == 40
    finally:
        broker.stop()
    broker = start_broker(tmp_path / "data")
    try:
        produce(broker, "fed", [{"key": b"k.%d" % i, "value": b"b%d" % i} for i in range(30)])
        time.sleep(0.5)
        broker.proc.send_signal(signal.SIGKILL)
        broker.proc.wait(10)
    finally:
        if broker.proc.poll() is None:
            broker.stop()
    broker = start_broker(tmp_path / "data")
    try:
        got = [body for _key, body in drain(broker, "fed-work", 30, wait=5)]
        # Routed once before the clean stop; after kill -9 at most routed again, never lost.
        assert not any(body.startswith(b"a") for body in got)
        assert set(got) == {b"b%d" % i for i in range(30)}
    finally:
        broker.stop()


def test_a_classic_queue_declared_under_a_topic_name_takes_the_name(
    broker: BrokerProcess, topic: str,
) -> None:
    produce(broker, topic, [{"value": b"record"}])
    conn = amqp(broker)
    ch = conn.channel()
    ok = ch.queue_declare(topic, durable=True)
    assert ok.method.message_count == 0
    ch.basic_publish("", topic, b"classic")
    method, _props, body = ch.basic_get(topic)
    deadline = time.monotonic() + 3
    while method is None and time.monotonic() < deadline:
        conn.process_data_events(0.05)
        method, _props, body = ch.basic_get(topic)
    assert method is not None and body == b"classic"
    ch.basic_ack(method.delivery_tag)
    conn.close()


def _kill(broker: BrokerProcess) -> None:
    broker.proc.send_signal(signal.SIGKILL)
    broker.proc.wait(10)


def test_a_feed_routes_each_committed_record_exactly_once_across_kill_9(tmp_path: Any) -> None:
    # Records (and an aborted transaction) written first; then the broker is killed
    # -9 several times while the feed routes them into a durable classic queue.
    # fsync: always makes each routed batch's queue write take a while, so the kills
    # land inside routing, between a batch's queue write and its position write too.
    data = tmp_path / "data"
    fsync = ("--set", "storage.fsync=always")
    broker = start_broker(data, *fsync)
    try:
        create_topic(broker.kafka_port, "once", partitions=2)
        conn = amqp(broker)
        ch = conn.channel()
        ch.queue_declare("once-work", durable=True)
        conn.close()
        producer = Producer({"bootstrap.servers": bootstrap(broker.kafka_port),
                             "transactional.id": "once-tx", "linger.ms": 5})
        producer.init_transactions(10)
        sent = []
        value = b"v" * 2000
        for txn in range(30):
            producer.begin_transaction()
            for i in range(200):
                key = b"k.%d" % (txn * 200 + i)
                producer.produce("once", key=key, value=value if txn != 7 else b"aborted")
                if txn != 7:
                    sent.append(key.decode())
            if txn == 7:
                producer.flush(10)
                producer.abort_transaction(10)
            else:
                producer.commit_transaction(10)
        del producer
        # The feed starts once everything is written and committed.
        conn = amqp(broker)
        ch = conn.channel()
        ch.exchange_declare("once-feed", "topic", durable=True,
                            arguments={"x-kafka-topic": "once"})
        ch.queue_bind("once-work", "once-feed", routing_key="k.*")
        conn.close()
        time.sleep(0.3)
        _kill(broker)
        for delay in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3):
            broker = start_broker(data, *fsync)
            time.sleep(delay)
            _kill(broker)
    finally:
        if broker.proc.poll() is None:
            broker.stop()
    broker = start_broker(data, *fsync)
    try:
        got = [key for key, _body in drain(broker, "once-work", len(sent), wait=30)]
        # Each committed record once (none twice, none lost), none of the aborted ones:
        # after a restart the aborted transaction is rebuilt before anything is routed.
        assert Counter(got) == Counter(sent)
        # Nothing more arrives later either.
        assert drain(broker, "once-work", 1, wait=1.5) == []
    finally:
        broker.stop()
