"""The control API (/_portask/) driven with real clients: what a reset, a wait, a fault
rule, a forced alarm and the request log look like from the client's side."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient

from portask.testing import ControlClient, ControlError, WaitTimeout
from tests.broker_process import BrokerProcess, start_broker


@pytest.fixture(scope="module")
def control_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    # No auto-creation: a deleted topic stays deleted when a client names it again.
    proc = start_broker(tmp_path_factory.mktemp("control") / "data",
                        "--set", "kafka.auto_create_topics=false")
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


@pytest.fixture
def ctl(control_broker: BrokerProcess) -> Iterator[ControlClient]:
    client = ControlClient(f"http://127.0.0.1:{control_broker.http_port}")
    yield client
    client.clear_faults()
    client.record_requests(False)
    client.clear_requests()


def _name() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


def _bootstrap(broker: BrokerProcess) -> str:
    return f"127.0.0.1:{broker.kafka_port}"


def _create_topic(broker: BrokerProcess, name: str, partitions: int = 1) -> None:
    from confluent_kafka.admin import NewTopic

    admin = AdminClient({"bootstrap.servers": _bootstrap(broker)})
    admin.create_topics([NewTopic(name, partitions)])[name].result(10)


def _produce(broker: BrokerProcess, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": _bootstrap(broker)})
    for value in values:
        producer.produce(topic, value, partition=0)
    assert producer.flush(10) == 0


def _amqp(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))


# -- reset ------------------------------------------------------------------------------


def test_reset_cancels_consumers_of_deleted_queues_and_deletes_topics(
        control_broker: BrokerProcess, ctl: ControlClient) -> None:
    topic, queue, exchange = _name(), _name(), _name()
    _create_topic(control_broker, topic)
    _produce(control_broker, topic, [b"a", b"b"])
    connection = _amqp(control_broker)
    channel = connection.channel()
    channel.queue_declare(queue)
    channel.exchange_declare(exchange, "fanout")
    channel.queue_bind(queue, exchange)
    channel.basic_publish(exchange, "", b"m1")
    channel.basic_publish(exchange, "", b"m2")
    ctl.wait_queue(queue, messages=2)
    cancelled: list[str] = []
    channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = channel.basic_consume(queue, lambda *args: None)
    ctl.wait_queue(queue, consumers=1)

    result = ctl.reset()

    assert result["topics"] >= 1 and result["queues"] >= 1 and result["exchanges"] >= 1
    connection.sleep(0.5)
    assert cancelled == [tag]
    assert not channel.is_closed  # Basic.Cancel, not a channel error
    metadata = AdminClient({"bootstrap.servers": _bootstrap(control_broker)}).list_topics(
        topic, timeout=10)
    assert metadata.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.exchange_declare(exchange, passive=True)
    assert closed.value.reply_code == 404
    connection.close()


def test_reset_with_a_prefix_keeps_what_does_not_match(
        control_broker: BrokerProcess, ctl: ControlClient) -> None:
    prefix = _name() + "-"
    gone, kept = prefix + "q", _name()
    connection = _amqp(control_broker)
    channel = connection.channel()
    channel.queue_declare(gone)
    channel.queue_declare(kept)
    channel.basic_publish("", kept, b"stays")

    result = ctl.reset(prefix=prefix)

    assert result["queues"] == 1 and result["topics"] == 0
    assert channel.queue_declare(kept, passive=True).method.message_count == 1
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        channel.queue_declare(gone, passive=True)
    connection.close()


def test_reset_of_one_vhost_leaves_kafka_alone(control_broker: BrokerProcess,
                                               ctl: ControlClient) -> None:
    topic = _name()
    _create_topic(control_broker, topic)
    result = ctl.reset(vhost="/")
    assert result["topics"] == 0
    assert ctl.wait_topic(topic, records=0)["exists"] is True
    with pytest.raises(ControlError) as refused:
        ctl.reset(vhost="no-such-vhost")
    assert refused.value.status == 400


# -- peek and waits ---------------------------------------------------------------------


def test_peek_reads_records_without_moving_a_consumer(control_broker: BrokerProcess,
                                                      ctl: ControlClient) -> None:
    topic = _name()
    _create_topic(control_broker, topic)
    _produce(control_broker, topic, [b"r0", b"r1", b"r2"])
    records = ctl.peek_topic(topic, 0, offset=1, count=2)
    assert [(r["offset"], r["value"]) for r in records] == [(1, "r1"), (2, "r2")]
    consumer = Consumer({"bootstrap.servers": _bootstrap(control_broker), "group.id": topic,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    first = None
    for _ in range(100):
        first = consumer.poll(0.2)
        if first is not None and first.error() is None:
            break
    consumer.close()
    assert first is not None and first.value() == b"r0"


def test_wait_queue_times_out_then_answers_once_messages_arrive(
        control_broker: BrokerProcess, ctl: ControlClient) -> None:
    queue = _name()
    connection = _amqp(control_broker)
    channel = connection.channel()
    channel.queue_declare(queue)
    with pytest.raises(WaitTimeout) as timed_out:
        ctl.wait_queue(queue, messages=2, timeout_ms=50)
    assert timed_out.value.status == 408 and timed_out.value.answer["messages"] == 0

    def publish_later() -> None:
        other = _amqp(control_broker)
        other.channel().basic_publish("", queue, b"1")
        other.channel().basic_publish("", queue, b"2")
        other.close()

    timer = threading.Timer(0.2, publish_later)
    timer.start()
    answer = ctl.wait_queue(queue, messages=2, timeout_ms=10000)
    timer.join()
    assert answer == {"ok": True, "exists": True, "messages": 2, "consumers": 0}
    connection.close()


def test_wait_group_answers_when_the_consumer_group_is_stable(
        control_broker: BrokerProcess, ctl: ControlClient) -> None:
    topic = group = _name()
    _create_topic(control_broker, topic)
    consumer = Consumer({"bootstrap.servers": _bootstrap(control_broker), "group.id": group})
    consumer.subscribe([topic])
    answers: list[dict[str, object]] = []
    waiter = threading.Thread(target=lambda: answers.append(
        ctl.wait_group(group, state="Stable", members=1, timeout_ms=20000)))
    waiter.start()
    while waiter.is_alive():
        consumer.poll(0.1)
    consumer.close()
    assert answers == [{"ok": True, "exists": True, "state": "Stable", "members": 1}]


# -- faults -----------------------------------------------------------------------------


def test_producer_retries_after_an_injected_not_leader_error(
        control_broker: BrokerProcess, ctl: ControlClient) -> None:
    topic = _name()
    _create_topic(control_broker, topic)
    ctl.record_requests()
    rule = ctl.add_fault(action="error", api="Produce", topic=topic,
                         error="NOT_LEADER_OR_FOLLOWER", times=1)
    assert rule["times"] == 1
    reports: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": _bootstrap(control_broker), "acks": "all",
                         "retry.backoff.ms": 50})
    producer.produce(topic, b"v", on_delivery=lambda err, msg: reports.append(err))
    assert producer.flush(15) == 0
    assert reports == [None]
    assert ctl.faults() == []  # used up
    produces = ctl.requests(api="Produce", topic=topic)
    assert [p["error"] for p in produces] == ["NOT_LEADER_OR_FOLLOWER", None]
    assert {p["details"]["acks"] for p in produces} == {-1}
    assert ctl.peek_topic(topic)[0]["value"] == "v"


def test_kafka_python_producer_times_out_on_a_dropped_answer(
        control_broker: BrokerProcess, ctl: ControlClient) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KafkaPythonError

    topic = _name()
    _create_topic(control_broker, topic)
    producer = KafkaProducer(bootstrap_servers=_bootstrap(control_broker), retries=0,
                             request_timeout_ms=1000)
    producer.send(topic, b"warm-up").get(timeout=10)
    ctl.add_fault(action="drop", api="Produce", topic=topic, times=1)
    with pytest.raises(KafkaPythonError) as failed:
        producer.send(topic, b"lost").get(timeout=10)
    assert "Timed" in type(failed.value).__name__ or "timed out" in str(failed.value).lower()
    producer.close(timeout=5)


def test_error_rules_are_checked_when_added(ctl: ControlClient) -> None:
    for bad in ({"action": "error", "api": "Produce", "error": "NO_SUCH_ERROR"},
                {"action": "throttle", "api": "Produce"},
                {"action": "error", "api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER",
                 "min_version": 9, "max_version": 3},
                {"action": "drop", "api": "Produse"}, {"action": "explode"},
                {"action": "delay", "api": "Fetch"}):
        with pytest.raises(ControlError) as refused:
            ctl.add_fault(**bad)  # type: ignore[arg-type]
        assert refused.value.status == 400, bad
    assert ctl.faults() == []


async def test_aiokafka_consumer_survives_all_connections_closed(
        control_broker: BrokerProcess, ctl: ControlClient) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = _name()
    _create_topic(control_broker, topic)
    producer = AIOKafkaProducer(bootstrap_servers=_bootstrap(control_broker))
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=_bootstrap(control_broker),
                                group_id=topic, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(topic, b"before")
        assert (await asyncio.wait_for(consumer.getone(), 20)).value == b"before"
        closed = await asyncio.to_thread(ctl.close_connections)
        assert closed >= 2
        await producer.send_and_wait(topic, b"after")
        assert (await asyncio.wait_for(consumer.getone(), 30)).value == b"after"
    finally:
        await consumer.stop()
        await producer.stop()


def test_pika_is_blocked_and_unblocked_by_the_memory_alarm(
        control_broker: BrokerProcess, ctl: ControlClient) -> None:
    connection = _amqp(control_broker)
    events: list[str] = []
    connection.add_on_connection_blocked_callback(lambda conn, frame: events.append("blocked"))
    connection.add_on_connection_unblocked_callback(
        lambda conn, frame: events.append("unblocked"))
    channel = connection.channel()
    queue = _name()
    channel.queue_declare(queue)
    try:
        assert ctl.raise_alarm("memory") == ["memory"]
        channel.basic_publish("", queue, b"held")  # RabbitMQ blocks on the first publish
        connection.process_data_events(time_limit=1)
        assert events == ["blocked"]
    finally:
        assert ctl.clear_alarm("memory") == []
    connection.process_data_events(time_limit=1)
    assert events == ["blocked", "unblocked"]
    assert ctl.wait_queue(queue, messages=1)["messages"] == 1
    connection.close()


async def test_aio_pika_robust_connection_reconnects_after_close_all(
        control_broker: BrokerProcess, ctl: ControlClient) -> None:
    import aio_pika

    connection = await aio_pika.connect_robust(
        f"amqp://guest:guest@127.0.0.1:{control_broker.amqp_port}/", reconnect_interval=0.2)
    reconnected = asyncio.Event()
    connection.reconnect_callbacks.add(lambda *args: reconnected.set())
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(_name())
        assert await asyncio.to_thread(ctl.close_connections) >= 1
        await asyncio.wait_for(reconnected.wait(), 20)
        await channel.default_exchange.publish(aio_pika.Message(b"again"), queue.name)
        answer = await asyncio.to_thread(ctl.wait_queue, queue.name, messages=1)
        assert answer["messages"] == 1
    finally:
        await connection.close()


def test_control_api_needs_a_broker_user(control_broker: BrokerProcess) -> None:
    intruder = ControlClient(f"http://127.0.0.1:{control_broker.http_port}",
                             password="wrong")
    with pytest.raises(ControlError) as refused:
        intruder.reset()
    assert refused.value.status == 401


def test_broker_methods_reach_the_control_api(tmp_path: Path) -> None:
    from portask.testing import Broker

    with Broker(tmp_path / "data") as broker:
        assert broker.reset()["topics"] == 0
        assert broker.add_fault(action="delay", api="Metadata", delay_ms=10)["id"] == 1
        assert broker.clear_faults() == 1


def _ctl(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portask", "ctl", "--url",
                           f"http://127.0.0.1:{broker.http_port}", *args],
                          capture_output=True, text=True, timeout=60)


def test_ctl_wraps_the_control_api(control_broker: BrokerProcess, ctl: ControlClient) -> None:
    topic = _name()
    _create_topic(control_broker, topic)
    _produce(control_broker, topic, [b"seen"])
    peeked = _ctl(control_broker, "peek", topic, "0", "--count", "1")
    assert peeked.returncode == 0, peeked.stderr
    assert [r["value"] for r in json.loads(peeked.stdout)] == ["seen"]

    added = _ctl(control_broker, "faults", "add", "--api", "Fetch", "--action", "delay",
                 "--delay-ms", "5", "--times", "3")
    assert added.returncode == 0, added.stderr
    assert [(r["api"], r["times"]) for r in ctl.faults()] == [("Fetch", 3)]
    assert json.loads(_ctl(control_broker, "faults", "clear").stdout) == {"cleared": 1}

    timed_out = _ctl(control_broker, "wait", "topic", topic, "--records", "5",
                     "--timeout-ms", "50")
    assert timed_out.returncode == 1
    assert json.loads(timed_out.stdout)["records"] == 1

    refused = _ctl(control_broker, "faults", "add", "--api", "Produce", "--action", "error",
                   "--error", "NOT_A_KAFKA_ERROR")
    assert refused.returncode == 2 and "NOT_A_KAFKA_ERROR" in refused.stderr

    reset = _ctl(control_broker, "reset", "--prefix", topic)
    assert json.loads(reset.stdout)["topics"] == 1


def test_amqp_rules_close_the_channel_or_the_connection(control_broker: BrokerProcess,
                                                        ctl: ControlClient) -> None:
    queue = _name()
    ctl.add_fault(protocol="amqp", method="queue.declare", queue=queue, action="error",
                  code=403, text="injected", times=1)
    connection = _amqp(control_broker)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        connection.channel().queue_declare(queue)
    assert (refused.value.reply_code, refused.value.reply_text) == (
        403, "ACCESS_REFUSED - injected")
    channel = connection.channel()
    assert channel.queue_declare(queue).method.queue == queue  # once only
    ctl.add_fault(protocol="amqp", method="basic.publish", exchange="", action="close")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        channel.basic_publish("", queue, b"never")
        connection.sleep(1)
    assert closed.value.reply_code == 320
    assert ctl.faults()[0]["applied"] == 1
    ctl.clear_faults()
    assert ctl.wait_queue(queue, messages=0)["messages"] == 0  # the publish was refused
    with pytest.raises(ControlError) as bad:
        ctl.add_fault(protocol="amqp", method="basic.publish", action="error", code=320)
    assert bad.value.status == 400
