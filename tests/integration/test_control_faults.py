"""Fault rules of the control API on every Kafka API and on AMQP publishes, driven with
real clients: what the client sees of an injected error, a throttle, a nack, and an AMQP
answer delayed or dropped."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pika
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, ThrottleEvent
from confluent_kafka.admin import NewTopic

from portask.testing import ControlClient, ControlError
from tests.broker_process import BrokerProcess, start_broker
from tests.integration.control import (
    admin,
    bootstrap,
    create_topic,
    recording_control,
    unique_name,
)


@pytest.fixture(scope="module")
def fault_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(tmp_path_factory.mktemp("faults") / "data",
                        "--set", "kafka.auto_create_topics=false")
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


@pytest.fixture
def ctl(fault_broker: BrokerProcess) -> Iterator[ControlClient]:
    yield from recording_control(fault_broker)


def _name() -> str:
    return unique_name("f")





# -- Kafka errors -------------------------------------------------------------------------


def test_consumer_group_waits_out_coordinator_not_available_then_consumes(
        fault_broker: BrokerProcess, ctl: ControlClient) -> None:
    topic = group = _name()
    create_topic(fault_broker, topic)
    producer = Producer({"bootstrap.servers": bootstrap(fault_broker)})
    producer.produce(topic, b"after the coordinator came back")
    assert producer.flush(10) == 0
    ctl.add_fault(action="error", api="FindCoordinator", error="COORDINATOR_NOT_AVAILABLE",
                  times=3)
    consumer = Consumer({"bootstrap.servers": bootstrap(fault_broker), "group.id": group,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        message = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.value() == b"after the coordinator came back"
    finally:
        consumer.close()
    assert ctl.faults() == []  # all three used
    finds = [r for r in ctl.requests(api="FindCoordinator")
             if r["client_id"] == "rdkafka"]
    assert all(group in (f["details"].get("coordinator_keys") or [f["details"]["key"]])
               for f in finds)
    errors = [r["error"] for r in finds]
    assert errors[:3] == ["COORDINATOR_NOT_AVAILABLE"] * 3 and None in errors[3:]


def test_an_error_on_create_topics_is_per_topic_and_creates_nothing(
        fault_broker: BrokerProcess, ctl: ControlClient) -> None:
    refused, other = _name(), _name()
    ctl.add_fault(action="error", api="CreateTopics", topic=refused,
                  error="POLICY_VIOLATION", times=1)
    client = admin(fault_broker)
    futures = client.create_topics([NewTopic(refused, 2), NewTopic(other, 1)])
    with pytest.raises(KafkaException) as failed:
        futures[refused].result(10)
    assert failed.value.args[0].code() == KafkaError.POLICY_VIOLATION
    # The whole request was answered with the error: the other topic too.
    with pytest.raises(KafkaException):
        futures[other].result(10)
    listed = client.list_topics(timeout=10).topics
    assert refused not in listed and other not in listed
    create_topic(fault_broker, refused, 2)  # the rule was used once
    assert len(client.list_topics(refused, timeout=10).topics[refused].partitions) == 2


def test_an_offset_commit_error_names_each_partition_and_commits_nothing(
        fault_broker: BrokerProcess, ctl: ControlClient) -> None:
    from confluent_kafka import TopicPartition

    topic = group = _name()
    create_topic(fault_broker, topic, partitions=2)
    answers: list[tuple[KafkaError | None, list[TopicPartition]]] = []
    consumer = Consumer({"bootstrap.servers": bootstrap(fault_broker), "group.id": group,
                         "enable.auto.commit": False,
                         "on_commit": lambda err, tps: answers.append((err, tps))})
    wanted = [TopicPartition(topic, 0, 42), TopicPartition(topic, 1, 7)]
    everything = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    try:
        ctl.add_fault(action="error", api="OffsetCommit", error="OFFSET_METADATA_TOO_LARGE",
                      times=1)
        consumer.commit(offsets=wanted, asynchronous=True)
        while not answers:
            consumer.poll(0.1)
        err, partitions = answers[0]
        assert err is not None and err.code() == KafkaError.OFFSET_METADATA_TOO_LARGE
        assert [(tp.partition, tp.error.code() if tp.error else None) for tp in partitions] == [
            (0, KafkaError.OFFSET_METADATA_TOO_LARGE), (1, KafkaError.OFFSET_METADATA_TOO_LARGE)]
        stored = consumer.committed(everything, timeout=10)
        assert [tp.offset for tp in stored] == [-1001, -1001]  # nothing committed
        consumer.commit(offsets=wanted, asynchronous=False)
        assert [tp.offset for tp in consumer.committed(everything, timeout=10)] == [42, 7]
    finally:
        consumer.close()
    commits = ctl.requests(api="OffsetCommit", topic=topic)
    assert [c["error"] for c in commits] == ["OFFSET_METADATA_TOO_LARGE", None]
    assert commits[-1]["details"]["offsets"] == [
        {"topic": topic, "partition": 0, "offset": 42},
        {"topic": topic, "partition": 1, "offset": 7}]


def test_metadata_error_on_a_topic_delays_the_producer_but_it_delivers(
        fault_broker: BrokerProcess, ctl: ControlClient) -> None:
    topic = _name()
    create_topic(fault_broker, topic)
    ctl.add_fault(action="error", api="Metadata", topic=topic, error="LEADER_NOT_AVAILABLE",
                  times=2)
    reports: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap(fault_broker),
                         "topic.metadata.refresh.fast.interval.ms": 50})
    producer.produce(topic, b"v", on_delivery=lambda err, msg: reports.append(err))
    assert producer.flush(15) == 0
    assert reports == [None]
    errors = [r["error"] for r in ctl.requests(api="Metadata", topic=topic)]
    assert errors[:2] == ["LEADER_NOT_AVAILABLE"] * 2 and errors[-1] is None


def test_a_version_range_limits_the_rule(fault_broker: BrokerProcess,
                                         ctl: ControlClient) -> None:
    topic = _name()
    create_topic(fault_broker, topic)
    # librdkafka 2.x produces with v7 or later: a rule for v0-v2 never matches it.
    ctl.add_fault(action="error", api="Produce", max_version=2, error="CORRUPT_MESSAGE")
    producer = Producer({"bootstrap.servers": bootstrap(fault_broker)})
    producer.produce(topic, b"v")
    assert producer.flush(10) == 0
    assert ctl.faults()[0]["applied"] == 0
    version = ctl.requests(api="Produce", topic=topic)[-1]["version"]
    ctl.clear_faults()
    ctl.add_fault(action="error", api="Produce", min_version=version, max_version=version,
                  error="TOPIC_AUTHORIZATION_FAILED", times=1)
    reports: list[KafkaError | None] = []
    producer.produce(topic, b"w", on_delivery=lambda err, msg: reports.append(err))
    producer.flush(10)
    assert [r.code() if r else None for r in reports] == [
        KafkaError.TOPIC_AUTHORIZATION_FAILED]


# -- throttle -----------------------------------------------------------------------------


def test_confluent_kafka_reports_an_injected_throttle(fault_broker: BrokerProcess,
                                                      ctl: ControlClient) -> None:
    topic = _name()
    create_topic(fault_broker, topic)
    events: list[ThrottleEvent] = []
    producer = Producer({"bootstrap.servers": bootstrap(fault_broker),
                         "throttle_cb": events.append})
    producer.produce(topic, b"warm-up")
    assert producer.flush(10) == 0
    assert events == []
    ctl.add_fault(action="throttle", api="Produce", topic=topic, throttle_ms=700, times=1)
    producer.produce(topic, b"throttled")
    assert producer.flush(10) == 0
    producer.poll(0.5)
    assert [round(e.throttle_time, 1) for e in events] == [0.7]
    assert ctl.peek_topic(topic, count=5)[-1]["value"] == "throttled"  # carried out


# -- AMQP nack ----------------------------------------------------------------------------


def _amqp(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.amqp_port))


def test_pika_confirmed_publish_is_nacked_by_a_rule(fault_broker: BrokerProcess,
                                                    ctl: ControlClient) -> None:
    queue, other = _name(), _name()
    connection = _amqp(fault_broker)
    channel = connection.channel()
    channel.queue_declare(queue)
    channel.queue_declare(other)
    channel.confirm_delivery()
    ctl.add_fault(protocol="amqp", method="basic.publish", queue=queue, action="nack",
                  times=1)
    channel.basic_publish("", other, b"another queue: acked")
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", queue, b"nacked")
    channel.basic_publish("", queue, b"acked")  # once only
    assert ctl.wait_queue(queue, messages=1)["messages"] == 1
    assert channel.basic_get(queue, auto_ack=True)[2] == b"acked"  # the nacked one not kept
    assert ctl.wait_queue(other, messages=1)["messages"] == 1
    connection.close()


async def test_aio_pika_sees_a_nack_for_a_routing_key(fault_broker: BrokerProcess,
                                                      ctl: ControlClient) -> None:
    import asyncio

    import aio_pika
    from aio_pika.exceptions import DeliveryError

    connection = await aio_pika.connect(
        f"amqp://guest:guest@127.0.0.1:{fault_broker.amqp_port}/")
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(_name(), aio_pika.ExchangeType.TOPIC)
        queue = await channel.declare_queue(_name())
        await queue.bind(exchange, "orders.#")
        await asyncio.to_thread(ctl.add_fault, protocol="amqp", method="basic.publish",
                                exchange=exchange.name, routing_key="orders.eu",
                                action="nack")
        with pytest.raises(DeliveryError):
            await exchange.publish(aio_pika.Message(b"refused"), "orders.eu")
        await exchange.publish(aio_pika.Message(b"taken"), "orders.us")
        answer = await asyncio.to_thread(ctl.wait_queue, queue.name, messages=1)
        assert answer["messages"] == 1
        assert (await asyncio.to_thread(ctl.faults))[0]["applied"] == 1
    finally:
        await connection.close()


def test_nack_rules_are_checked_when_added(ctl: ControlClient) -> None:

    for bad in ({"method": "queue.declare", "action": "nack"},
                {"method": "basic.publish", "action": "error", "routing_key": "k"}):
        with pytest.raises(ControlError) as refused:
            ctl.add_fault(protocol="amqp", **bad)  # type: ignore[arg-type]
        assert refused.value.status == 400, bad


# -- AMQP delay and drop ------------------------------------------------------------------


def test_pika_queue_declare_waits_out_a_delay(fault_broker: BrokerProcess,
                                              ctl: ControlClient) -> None:
    queue = _name()
    connection = _amqp(fault_broker)
    channel = connection.channel()
    channel.queue_declare(_name())  # no rule: at once
    ctl.add_fault(protocol="amqp", method="queue.declare", action="delay", delay_ms=600,
                  times=1)
    started = time.monotonic()
    assert channel.queue_declare(queue).method.queue == queue
    waited = time.monotonic() - started
    assert 0.6 <= waited < 3, waited
    started = time.monotonic()
    channel.queue_declare(_name())  # the rule was used up: at once again
    assert time.monotonic() - started < 0.3
    assert ctl.requests(protocol="amqp", api="queue.declare")[-2]["fault"] == "delay"
    connection.close()


def test_a_delayed_confirm_arrives_late_and_acked(fault_broker: BrokerProcess,
                                                  ctl: ControlClient) -> None:
    queue = _name()
    ctl.record_requests(False)  # the rules' own path, without the request log's
    connection = _amqp(fault_broker)
    channel = connection.channel()
    channel.queue_declare(queue)
    channel.confirm_delivery()
    ctl.add_fault(protocol="amqp", method="basic.publish", action="delay", delay_ms=500,
                  times=1)
    started = time.monotonic()
    channel.basic_publish("", queue, b"late")  # returns once the Basic.Ack arrives
    assert time.monotonic() - started >= 0.5
    assert channel.basic_get(queue, auto_ack=True)[2] == b"late"
    connection.close()


async def test_a_dropped_confirm_makes_the_publisher_time_out(fault_broker: BrokerProcess,
                                                              ctl: ControlClient) -> None:
    import asyncio

    import aio_pika

    url = f"amqp://guest:guest@127.0.0.1:{fault_broker.amqp_port}/"
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(_name())
        await asyncio.to_thread(ctl.add_fault, protocol="amqp", method="basic.publish",
                                action="drop", times=1)
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await channel.default_exchange.publish(aio_pika.Message(b"never confirmed"),
                                                   queue.name, timeout=0.5)
        assert time.monotonic() - started >= 0.5
    finally:
        await connection.close()
    # The broker took the publish; only the answers on that connection were lost.
    answer = await asyncio.to_thread(ctl.wait_queue, queue.name, messages=1)
    assert answer["messages"] == 1
    other = await aio_pika.connect(url)  # other connections are not held
    try:
        declared = await (await other.channel()).declare_queue(queue.name, passive=True)
        assert declared.declaration_result.message_count == 1
    finally:
        await other.close()


def test_deliveries_held_past_the_write_budget_all_arrive_after_a_delay(
        fault_broker: BrokerProcess, ctl: ControlClient) -> None:
    queue = _name()
    connection = _amqp(fault_broker)
    channel = connection.channel()
    channel.queue_declare(queue)
    body = b"x" * 4096
    for _ in range(600):  # 2.4 MiB: past the 1 MiB budget while held
        channel.basic_publish("", queue, body)
    ctl.wait_queue(queue, messages=600)
    ctl.add_fault(protocol="amqp", method="basic.consume", action="delay", delay_ms=400,
                  times=1)
    got = []
    started = time.monotonic()
    for method, _, payload in channel.consume(queue, auto_ack=True, inactivity_timeout=5):
        if method is None:
            break
        got.append(payload)
        if len(got) == 600:
            break
    assert time.monotonic() - started >= 0.4
    assert len(got) == 600 and set(got) == {body}
    connection.close()


def test_a_drop_on_another_queue_leaves_this_one_alone(fault_broker: BrokerProcess,
                                                       ctl: ControlClient) -> None:
    connection = _amqp(fault_broker)
    channel = connection.channel()
    ctl.add_fault(protocol="amqp", method="queue.declare", queue="not-this-one",
                  action="drop")
    started = time.monotonic()
    channel.queue_declare(_name())
    assert time.monotonic() - started < 0.3
    assert ctl.faults()[0]["applied"] == 0
    connection.close()


def test_delay_and_drop_rules_are_checked_when_added(ctl: ControlClient) -> None:
    from portask.testing import ControlError

    for bad in ({"method": "queue.declare", "action": "delay"},
                {"method": "queue.declare", "action": "drop", "delay_ms": 5},
                {"method": "queue.declare", "action": "delay", "delay_ms": 5, "code": 406}):
        with pytest.raises(ControlError) as refused:
            ctl.add_fault(protocol="amqp", **bad)  # type: ignore[arg-type]
        assert refused.value.status == 400, bad


# -- broker-level: a listener that refuses, fsyncs that fail ------------------------------


def test_a_refusing_listener_looks_down_to_clients_until_it_accepts_again(
        fault_broker: BrokerProcess, ctl: ControlClient) -> None:
    topic = _name()
    create_topic(fault_broker, topic)
    errors: list[KafkaError] = []
    reports: list[tuple[KafkaError | None, float]] = []
    producer = Producer({"bootstrap.servers": bootstrap(fault_broker),
                         "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 200,
                         "error_cb": errors.append})
    producer.produce(topic, b"before")
    assert producer.flush(10) == 0
    closed = ctl.refuse_connections("kafka", 1500, close_existing=True)
    refused_at = time.monotonic()
    assert closed >= 1
    producer.produce(topic, b"during", on_delivery=lambda err, msg: reports.append(
        (err, time.monotonic() - refused_at)))
    ctl.refuse_connections("amqp", 5000)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        _amqp(fault_broker)
    ctl.accept_connections("amqp")
    _amqp(fault_broker).close()  # accepted again at once
    assert producer.flush(20) == 0
    [(err, after_s)] = reports
    assert err is None and after_s >= 1.4  # delivered once the listener accepted again
    assert any(e.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)
               for e in errors)


@pytest.fixture(scope="module")
def fsync_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(tmp_path_factory.mktemp("fsync") / "data",
                        "--set", "storage.fsync=always")
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


def test_failed_fsyncs_are_storage_errors_for_kafka_and_nacks_for_amqp(
        fsync_broker: BrokerProcess) -> None:
    ctl = ControlClient(f"http://127.0.0.1:{fsync_broker.http_port}")
    topic, queue = _name(), _name()
    create_topic(fsync_broker, topic)
    reports: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap(fsync_broker), "acks": "all",
                         "retries": 0, "enable.idempotence": False})
    producer.produce(topic, b"synced", on_delivery=lambda err, msg: reports.append(err))
    assert producer.flush(10) == 0
    assert ctl.fail_syncs(1) == 1
    producer.produce(topic, b"not synced", on_delivery=lambda err, msg: reports.append(err))
    producer.flush(10)
    producer.produce(topic, b"synced again", on_delivery=lambda err, msg: reports.append(err))
    assert producer.flush(10) == 0
    assert [r.code() if r else None for r in reports] == [
        None, KafkaError.KAFKA_STORAGE_ERROR, None]

    connection = _amqp(fsync_broker)
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.confirm_delivery()
    persistent = pika.BasicProperties(delivery_mode=2)
    channel.basic_publish("", queue, b"stored", persistent)
    assert ctl.fail_syncs(1) == 1
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", queue, b"not stored", persistent)
    channel.basic_publish("", queue, b"stored again", persistent)
    assert ctl.fail_syncs(0) == 0
    assert channel.queue_declare(queue, passive=True).method.message_count == 2
    bodies = [channel.basic_get(queue, auto_ack=True)[2] for _ in range(2)]
    assert bodies == [b"stored", b"stored again"]
    connection.close()


# -- who a rule matches, and for how long -----------------------------------------------


def test_kafka_rules_match_the_client_id_and_end_after_their_duration(
        fault_broker: BrokerProcess, ctl: ControlClient) -> None:
    topic = _name()
    create_topic(fault_broker, topic)
    ctl.add_fault(action="error", api="Produce", topic=topic, client="billing",
                  error="NOT_LEADER_OR_FOLLOWER", duration_ms=60_000)
    [listed] = ctl.faults()
    assert (listed["client"], listed["duration_ms"]) == ("billing", 60_000)

    def produce(client_id: str, retries: int) -> list[KafkaError | None]:
        reports: list[KafkaError | None] = []
        producer = Producer({"bootstrap.servers": bootstrap(fault_broker),
                             "client.id": client_id, "retries": retries,
                             "message.timeout.ms": 3000, "retry.backoff.ms": 50})
        producer.produce(topic, client_id.encode(),
                         on_delivery=lambda err, msg: reports.append(err))
        producer.flush(10)
        return reports

    assert produce("shipping", 0) == [None]  # another client: the rule does not apply
    assert ctl.faults()[0]["applied"] == 0
    [refused] = produce("billing", 0)  # librdkafka retries this error until it times out
    assert refused is not None
    assert ctl.faults()[0]["applied"] >= 1
    ctl.clear_faults()
    ctl.add_fault(action="error", api="Produce", topic=topic, client="billing",
                  error="NOT_LEADER_OR_FOLLOWER", duration_ms=300)
    time.sleep(0.4)
    assert ctl.faults() == []  # its duration ran out
    assert produce("billing", 0) == [None]


def test_amqp_rules_match_the_connection_name_and_the_user(
        fault_broker: BrokerProcess, ctl: ControlClient) -> None:
    queue = _name()

    def declare(name: str) -> int:
        params = pika.ConnectionParameters(
            "127.0.0.1", fault_broker.amqp_port,
            client_properties={"connection_name": name})
        connection = pika.BlockingConnection(params)
        try:
            connection.channel().queue_declare(queue)
            return 200
        except pika.exceptions.ChannelClosedByBroker as closed:
            return int(closed.reply_code)
        finally:
            if connection.is_open:
                connection.close()

    ctl.add_fault(protocol="amqp", method="queue.declare", queue=queue, action="error",
                  code=403, text="not for orders", client="orders-service")
    ctl.add_fault(protocol="amqp", method="queue.declare", queue=queue, action="error",
                  code=406, text="not for other users", user="someone-else")
    assert declare("billing-service") == 200  # neither the name nor the user matches
    assert declare("orders-service") == 403
    assert [rule["applied"] for rule in ctl.faults()] == [1, 0]


def test_a_partition_rule_applies_to_requests_naming_that_partition(
        fault_broker: BrokerProcess, ctl: ControlClient) -> None:
    topic = _name()
    create_topic(fault_broker, topic, partitions=2)
    ctl.add_fault(action="error", api="Produce", topic=topic, partition=1,
                  error="KAFKA_STORAGE_ERROR")
    producer = Producer({"bootstrap.servers": bootstrap(fault_broker), "retries": 0,
                         "message.timeout.ms": 3000})
    reports: dict[int, KafkaError | None] = {}
    for partition in (0, 1):
        producer.produce(topic, b"v", partition=partition,
                         on_delivery=lambda err, msg, p=partition: reports.update({p: err}))
        producer.flush(10)
    assert reports[0] is None
    failed = reports[1]
    assert failed is not None and failed.code() == KafkaError.KAFKA_STORAGE_ERROR
    assert ctl.faults()[0]["applied"] >= 1
    with pytest.raises(ControlError) as bad:
        ctl.add_fault(action="error", api="Produce", partition=1, error="KAFKA_STORAGE_ERROR")
    assert bad.value.status == 400
