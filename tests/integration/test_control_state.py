"""Seed, snapshot and restore through the control API, checked with real clients: what
pika and confluent-kafka see after a restore is what they saw when it was taken."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from portask.testing import ControlClient, ControlError
from tests.broker_process import BrokerProcess, start_broker

Channel = pika.adapters.blocking_connection.BlockingChannel


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(tmp_path_factory.mktemp("state") / "data",
                        "--set", "kafka.auto_create_topics=false")
    yield proc
    proc.stop()


@pytest.fixture
def ctl(broker: BrokerProcess) -> ControlClient:
    client = ControlClient(f"http://127.0.0.1:{broker.http_port}")
    client.reset()
    return client


def _connect(broker: BrokerProcess, vhost: str = "/") -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.amqp_port, virtual_host=vhost))


def _drain(channel: Channel, queue: str) -> list[tuple[bytes, bool, int | None]]:
    seen = []
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return seen
        seen.append((body, method.redelivered, props.priority))


def _records(broker: BrokerProcess, topic: str, partitions: int
             ) -> list[tuple[int, int, bytes | None, bytes | None]]:
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}",
                         "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    seen = []
    quiet = 0
    for _ in range(60):
        got = [m for m in consumer.consume(100, timeout=0.25) if m.error() is None]
        seen += [(m.partition(), m.offset(), m.key(), m.value()) for m in got]
        quiet = 0 if got or not seen else quiet + 1
        if quiet >= 3:  # nothing new for 0.75 s after the first records
            break
    consumer.close()
    return sorted(seen)


SEED = """
vhosts:
  /:
    exchanges:
      - {name: orders, type: topic, durable: true}
      - {name: audit, type: fanout, durable: false}
    queues:
      - name: billing
        durable: true
        arguments: {x-max-priority: 5}
        messages:
          - {body: low, routing_key: order.placed, properties: {priority: 1}}
          - {body: high, routing_key: order.placed, properties: {priority: 4}}
      - {name: audit-log, durable: false}
    bindings:
      - {source: orders, destination: billing, destination_type: queue, routing_key: "order.*"}
      - {source: orders, destination: audit, destination_type: exchange, routing_key: "#"}
      - {source: audit, destination: audit-log, destination_type: queue}
topics:
  - name: events
    partitions: 2
    configs: {retention.ms: "3600000"}
    records:
      - {partition: 0, key: k0, value: v0}
      - {partition: 1, key: k1, value: v1, headers: {h: x}}
      - {partition: 1, key: k2, value: v2}
"""


def test_seed_declares_a_topology_that_real_clients_use(broker: BrokerProcess,
                                                        ctl: ControlClient) -> None:
    result = ctl.seed(SEED)
    assert {k: result[k] for k in ("exchanges", "queues", "bindings", "messages", "topics",
                                   "records")} == {
        "exchanges": 2, "queues": 2, "bindings": 3, "messages": 2, "topics": 1, "records": 3}
    connection = _connect(broker)
    channel = connection.channel()
    channel.basic_publish("orders", "order.paid", b"paid",
                          pika.BasicProperties(delivery_mode=2, priority=2))
    ctl.wait_queue("billing", messages=3)
    assert _drain(channel, "billing") == [(b"high", False, 4), (b"paid", False, 2),
                                          (b"low", False, 1)]
    assert [b for b, _, _ in _drain(channel, "audit-log")] == [b"paid"]
    connection.close()
    assert _records(broker, "events", 2) == [(0, 0, b"k0", b"v0"), (1, 0, b"k1", b"v1"),
                                             (1, 1, b"k2", b"v2")]
    assert ctl.seed(SEED)["topics"] == 0  # seeding again declares again: nothing new


def test_a_bad_seed_is_refused_with_the_reason(ctl: ControlClient) -> None:
    with pytest.raises(ControlError) as refused:
        ctl.seed({"queues": [{"name": "q", "arguments": {"x-max-priority": "high"}}]})
    assert refused.value.status == 400 and "x-max-priority" in str(refused.value)
    with pytest.raises(ControlError) as unknown:
        ctl.seed({"queus": []})
    assert unknown.value.status == 400 and "queus" in str(unknown.value)


def _build_state(broker: BrokerProcess, ctl: ControlClient) -> None:
    connection = _connect(broker)
    channel = connection.channel()
    channel.exchange_declare("jobs", "direct", durable=True)
    channel.exchange_declare("fan", "fanout")
    channel.queue_declare("durable-q", durable=True)
    channel.queue_declare("transient-q")
    channel.queue_declare("ttl-q", arguments={"x-message-ttl": 60000})
    channel.queue_bind("durable-q", "jobs", "a")
    channel.queue_bind("transient-q", "jobs", "b")
    channel.exchange_bind("fan", "jobs", "a")
    channel.queue_bind("ttl-q", "fan")
    for i in range(5):
        channel.basic_publish("jobs", "a", f"a{i}".encode(),
                              pika.BasicProperties(delivery_mode=2, headers={"i": i}))
        channel.basic_publish("jobs", "b", f"b{i}".encode())
    connection.close()
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}"})
    admin.create_topics([NewTopic("orders", 2)])["orders"].result(10)
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}"})
    for i in range(6):
        producer.produce("orders", f"v{i}".encode(), key=f"k{i}".encode(), partition=i % 2)
    assert producer.flush(10) == 0
    _commit(broker, "billing", [TopicPartition("orders", 0, 2), TopicPartition("orders", 1, 1)])
    ctl.wait_queue("ttl-q", messages=5)


def _commit(broker: BrokerProcess, group: str, offsets: list[TopicPartition]) -> None:
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}",
                         "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=offsets, asynchronous=False)
    consumer.close()


def _committed(broker: BrokerProcess, group: str) -> list[tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}",
                         "group.id": group})
    got = consumer.committed([TopicPartition("orders", 0), TopicPartition("orders", 1)],
                             timeout=10)
    consumer.close()
    return [(tp.partition, tp.offset) for tp in got]


def _amqp_state(broker: BrokerProcess) -> dict[str, list[tuple[bytes, bool, int | None]]]:
    connection = _connect(broker)
    channel = connection.channel()
    # Routing as it was: jobs -a-> durable-q and (via fan) ttl-q; jobs -b-> transient-q.
    channel.confirm_delivery()
    channel.basic_publish("jobs", "a", b"probe-a")
    channel.basic_publish("jobs", "b", b"probe-b")
    state = {q: _drain(channel, q) for q in ("durable-q", "transient-q", "ttl-q")}
    connection.close()
    return state


def test_restore_brings_back_exactly_what_the_snapshot_took(broker: BrokerProcess,
                                                           ctl: ControlClient) -> None:
    _build_state(broker, ctl)
    taken = ctl.snapshot("base")
    assert {k: taken[k] for k in ("topics", "records", "queues", "messages", "offsets")} == {
        "topics": 1, "records": 6, "queues": 3, "messages": 15, "offsets": 2}
    expected_records = _records(broker, "orders", 2)
    assert len(expected_records) == 6

    # Change everything: consume, delete, add.
    expected = _amqp_state(broker)
    connection = _connect(broker)
    channel = connection.channel()
    channel.queue_delete("durable-q")
    channel.queue_declare("extra-q", durable=True)
    connection.close()
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}"})
    producer.produce("orders", b"later", partition=0)
    assert producer.flush(10) == 0
    _commit(broker, "billing", [TopicPartition("orders", 0, 3)])

    for _ in range(2):  # a restore leaves the snapshot as it was: it restores again
        restored = ctl.restore("base")
        assert restored["took_ms"] >= 0
        assert _amqp_state(broker) == expected
        assert _records(broker, "orders", 2) == expected_records
        assert _committed(broker, "billing") == [(0, 2), (1, 1)]
        connection = _connect(broker)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as missing:
            connection.channel().queue_declare("extra-q", passive=True)
        assert missing.value.reply_code == 404
        connection.close()

    assert expected["durable-q"][:2] == [(b"a0", False, None), (b"a1", False, None)]
    assert [b for b, _, _ in expected["durable-q"]][-1] == b"probe-a"
    assert [b for b, _, _ in expected["ttl-q"]] == [b"a0", b"a1", b"a2", b"a3", b"a4",
                                                    b"probe-a"]
    assert [s["name"] for s in ctl.snapshots()] == ["base"]
    ctl.delete_snapshot("base")
    with pytest.raises(ControlError) as gone:
        ctl.restore("base")
    assert gone.value.status == 404


def test_restored_durable_queues_and_topics_survive_a_restart(
        tmp_path: Path) -> None:
    proc = start_broker(tmp_path / "data")
    try:
        ctl = ControlClient(f"http://127.0.0.1:{proc.http_port}")
        ctl.seed(SEED)
        ctl.snapshot("seeded")
        ctl.reset()
        ctl.restore("seeded")
        proc.stop()
        proc = start_broker(tmp_path / "data")
        connection = _connect(proc)
        assert _drain(connection.channel(), "billing") == [(b"high", False, 4),
                                                           (b"low", False, 1)]
        connection.close()
        assert len(_records(proc, "events", 2)) == 3
    finally:
        proc.stop()


def test_a_durable_queue_refilled_in_place_holds_the_snapshot_across_a_kill(
        tmp_path: Path) -> None:
    """A restore purges and refills an idle durable queue instead of making it again:
    after a kill -9 it holds the snapshot's messages, not what was there before."""
    proc = start_broker(tmp_path / "data", "--set", "storage.fsync=always")
    try:
        ctl = ControlClient(f"http://127.0.0.1:{proc.http_port}")
        connection = _connect(proc)
        channel = connection.channel()
        channel.queue_declare("jobs", durable=True)
        persistent = pika.BasicProperties(delivery_mode=2)
        channel.queue_declare("ranked", durable=True, arguments={"x-max-priority": 5})
        for body in (b"s0", b"s1", b"s2"):
            channel.basic_publish("", "jobs", body, persistent)
        for body, priority in ((b"low", 1), (b"high", 4)):
            channel.basic_publish("", "ranked", body,
                                  pika.BasicProperties(delivery_mode=2, priority=priority))
        ctl.wait_queue("jobs", messages=3)
        ctl.wait_queue("ranked", messages=2)
        ctl.snapshot("base")
        for queue in ("jobs", "ranked"):
            method, _, _ = channel.basic_get(queue)
            channel.basic_ack(method.delivery_tag)
        channel.basic_publish("", "jobs", b"later", persistent)
        connection.close()
        for _ in range(2):
            ctl.restore("base")
        assert [m["payload"] for m in ctl.peek_queue("jobs")] == ["s0", "s1", "s2"]
        assert [m["payload"] for m in ctl.peek_queue("ranked")] == ["high", "low"]
        proc.stop(signal.SIGKILL)
        proc = start_broker(tmp_path / "data")
        connection = _connect(proc)
        channel = connection.channel()
        assert _drain(channel, "jobs") == [
            (b"s0", False, None), (b"s1", False, None), (b"s2", False, None)]
        assert _drain(channel, "ranked") == [(b"high", False, 4), (b"low", False, 1)]
        connection.close()
    finally:
        proc.stop()


def test_ctl_seeds_snapshots_and_restores(broker: BrokerProcess, ctl: ControlClient,
                                          tmp_path: Path) -> None:
    seed_file = tmp_path / "topology.yaml"
    seed_file.write_text(SEED)

    def run(*args: str) -> dict[str, object]:
        done = subprocess.run([sys.executable, "-m", "portask", "ctl", "--url",
                               f"http://127.0.0.1:{broker.http_port}", *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    assert run("seed", str(seed_file))["messages"] == 2
    assert run("snapshot", "s1")["messages"] == 2
    ctl.reset()
    with pytest.raises(ControlError):
        ctl.peek_queue("billing")  # gone with the reset
    assert run("restore", "s1")["queues"] == 2
    assert [m["payload"] for m in ctl.peek_queue("billing")] == ["high", "low"]


def test_a_vhost_made_at_run_time_is_used_and_deleted_with_its_queues(
        broker: BrokerProcess, ctl: ControlClient) -> None:
    name = f"v-{uuid.uuid4().hex[:6]}"
    assert ctl.create_vhost(name) is True
    assert ctl.create_vhost(name) is False
    connection = _connect(broker, name)
    channel = connection.channel()
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", b"in-vhost")
    ctl.wait_queue("jobs", vhost=name, messages=1)
    with pytest.raises(ControlError):
        ctl.peek_queue("jobs")  # not in vhost /
    cancelled: list[str] = []
    channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = channel.basic_consume("jobs", lambda *a: None)
    ctl.wait_queue("jobs", vhost=name, consumers=1)

    ctl.delete_vhost(name)
    # As RabbitMQ: the vhost's connections are closed (320), then its queues go.
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        connection.sleep(1.0)
    assert closed.value.reply_code == 320
    assert closed.value.reply_text == f"CONNECTION_FORCED - vhost '{name}' is deleted"
    assert cancelled == [] and tag
    with pytest.raises(ControlError) as gone:
        ctl.peek_queue("jobs", vhost=name)
    assert gone.value.status == 404
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        _connect(broker, name)
    with pytest.raises(ControlError) as missing:
        ctl.delete_vhost(name)
    assert missing.value.status == 404


def test_a_topic_whose_start_moved_is_restored_at_the_same_offsets(
        broker: BrokerProcess, ctl: ControlClient) -> None:
    bootstrap = f"127.0.0.1:{broker.kafka_port}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("trimmed", 1)])["trimmed"].result(10)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(5):
        producer.produce("trimmed", f"v{i}".encode(), partition=0)
        producer.flush(10)  # one batch per record: the start moves between batches
    for future in admin.delete_records([TopicPartition("trimmed", 0, 3)]).values():
        future.result(10)
    expected = _records(broker, "trimmed", 1)
    assert [(offset, value) for _, offset, _, value in expected] == [(3, b"v3"), (4, b"v4")]
    ctl.snapshot("trimmed")
    producer.produce("trimmed", b"later", partition=0)
    assert producer.flush(10) == 0

    ctl.restore("trimmed")

    assert _records(broker, "trimmed", 1) == expected
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    assert consumer.get_watermark_offsets(TopicPartition("trimmed", 0), timeout=10) == (3, 5)
    consumer.close()


# As `rabbitmqctl export_definitions` writes it (RabbitMQ 3.10), plus Kafka topics.
EXPORT = {
    "rabbit_version": "3.10.25", "rabbitmq_version": "3.10.25",
    "product_name": "RabbitMQ", "product_version": "3.10.25",
    "users": [], "permissions": [], "topic_permissions": [], "parameters": [],
    "global_parameters": [{"name": "cluster_name", "value": "rabbit@ci"}],
    "vhosts": [{"name": "/"}, {"name": "shop"}],
    "policies": [{"vhost": "shop", "name": "cap", "pattern": "^capped$",
                  "apply-to": "queues", "priority": 0,
                  "definition": {"max-length": 2}}],
    "exchanges": [{"name": "orders", "vhost": "shop", "type": "topic", "durable": True,
                   "auto_delete": False, "internal": False, "arguments": {}},
                  {"name": "amq.direct", "vhost": "shop", "type": "direct",
                   "durable": True, "auto_delete": False, "internal": False,
                   "arguments": {}}],
    "queues": [{"name": "billing", "vhost": "shop", "durable": True, "auto_delete": False,
                "arguments": {"x-queue-type": "classic"}},
               {"name": "capped", "vhost": "shop", "durable": True, "auto_delete": False,
                "arguments": {}}],
    "bindings": [{"source": "orders", "vhost": "shop", "destination": "billing",
                  "destination_type": "queue", "routing_key": "order.*", "arguments": {}},
                 {"source": "orders", "vhost": "shop", "destination": "capped",
                  "destination_type": "queue", "routing_key": "#", "arguments": {}}],
    "topics": [{"name": "shop-events", "partitions": 2,
                "records": [{"partition": 1, "key": "k", "value": "v"}]}],
}


def test_a_definitions_export_seeds_the_topology_pika_uses(broker: BrokerProcess,
                                                           ctl: ControlClient) -> None:
    result = ctl.seed(json.dumps(EXPORT))
    assert result["definitions"] == {"vhosts": 1, "exchanges": 1, "policies": 1,
                                     "queues": 2, "bindings": 2}
    assert result["skipped"] == ["global_parameters[0]: global parameter 'cluster_name'",
                                 "exchanges[1]: 'amq.direct' (a name RabbitMQ reserves)"]
    assert (result["topics"], result["records"]) == (1, 1)
    connection = _connect(broker, "shop")
    channel = connection.channel()
    channel.confirm_delivery()
    for body in (b"one", b"two", b"three"):
        channel.basic_publish("orders", "order.placed", body,
                              pika.BasicProperties(delivery_mode=2))
    assert [b for b, _, _ in _drain(channel, "billing")] == [b"one", b"two", b"three"]
    # the policy came with it: max-length 2 keeps the newest two
    assert [b for b, _, _ in _drain(channel, "capped")] == [b"two", b"three"]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        channel.queue_declare("billing", durable=False)  # as imported: durable
    assert refused.value.reply_code == 406
    connection.close()
    assert _records(broker, "shop-events", 2) == [(1, 0, b"k", b"v")]


def test_definitions_under_a_key_seed_next_to_portask_entries(
        broker: BrokerProcess, ctl: ControlClient, tmp_path: Path) -> None:
    definitions = {k: EXPORT[k] for k in ("vhosts", "exchanges", "queues", "bindings")}
    seed_file = tmp_path / "seed.json"
    # Portask's own entries add to what the definitions declared (imported first):
    # messages in billing, declared again equivalently.
    seed_file.write_text(json.dumps({
        "definitions": definitions,
        "vhosts": {"shop": {"queues": [{
            "name": "billing", "arguments": {"x-queue-type": "classic"},  # as declared
            "messages": [{"body": "seeded", "routing_key": "order.placed"}]}]}}}))
    done = subprocess.run([sys.executable, "-m", "portask", "ctl", "--url",
                           f"http://127.0.0.1:{broker.http_port}", "seed", str(seed_file)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["definitions"]["queues"] == 2
    connection = _connect(broker, "shop")
    channel = connection.channel()
    channel.basic_publish("orders", "order.paid", b"paid")
    ctl.wait_queue("billing", vhost="shop", messages=2)
    assert [b for b, _, _ in _drain(channel, "billing")] == [b"seeded", b"paid"]
    connection.close()


def test_a_bad_definitions_document_changes_nothing(ctl: ControlClient) -> None:
    bad = {"rabbit_version": "3.10.25", "vhosts": [{"name": "/"}],
           "queues": [{"name": "fine", "vhost": "/", "durable": True}],
           "bindings": [{"source": "nowhere", "vhost": "/", "destination": "fine",
                         "destination_type": "queue", "routing_key": ""}]}
    with pytest.raises(ControlError) as refused:
        ctl.seed(bad)
    assert refused.value.status == 400 and "bindings[0]" in str(refused.value)
    with pytest.raises(ControlError) as missing:
        ctl.peek_queue("fine")
    assert missing.value.status == 404


def _topic_ids(broker: BrokerProcess, names: list[str]) -> dict[str, str]:
    from confluent_kafka import TopicCollection

    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}"})
    described = admin.describe_topics(TopicCollection(names))
    return {name: str(future.result(10).topic_id) for name, future in described.items()}


def test_restore_keeps_untouched_topics_and_rebuilds_changed_ones(
        broker: BrokerProcess, ctl: ControlClient) -> None:
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    names = ["kept", "written", "recreated", "altered", "trimmed"]
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}"})
    for future in admin.create_topics([NewTopic(n, 1) for n in names]).values():
        future.result(10)
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}"})
    for name in names:
        for i in range(3):
            producer.produce(name, f"{name}-{i}".encode(), partition=0)
    assert producer.flush(10) == 0
    ctl.snapshot("topics")
    before = _topic_ids(broker, names)

    producer.produce("written", b"extra", partition=0)
    assert producer.flush(10) == 0
    admin.delete_topics(["recreated"])["recreated"].result(10)
    for _ in range(50):  # the same number of records, other values, at the same offsets
        try:
            admin.create_topics([NewTopic("recreated", 1)])["recreated"].result(10)
            break
        except KafkaException:
            time.sleep(0.1)
    for i in range(3):
        producer.produce("recreated", f"impostor-{i}".encode(), partition=0)
    assert producer.flush(10) == 0
    admin.incremental_alter_configs([ConfigResource(
        ConfigResource.Type.TOPIC, "altered", incremental_configs=[ConfigEntry(
            "retention.ms", "12345", incremental_operation=AlterConfigOpType.SET)])]
    )[ConfigResource(ConfigResource.Type.TOPIC, "altered")].result(10)
    admin.delete_records([TopicPartition("trimmed", 0, 1)])[
        TopicPartition("trimmed", 0, 1)].result(10)

    ctl.restore("topics")
    after = _topic_ids(broker, names)
    assert after["kept"] == before["kept"]  # left as it was
    for name in names[1:]:
        assert after[name] != before[name], name  # rebuilt from the snapshot
        assert [v for _, _, _, v in _records(broker, name, 1)] == [
            f"{name}-{i}".encode() for i in range(3)], name
    assert [v for _, _, _, v in _records(broker, "kept", 1)] == [
        b"kept-0", b"kept-1", b"kept-2"]
    configs = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "altered")])
    (altered,) = configs.values()
    assert altered.result(10)["retention.ms"].value != "12345"

    # Each topic is still an AMQP stream of vhost /, the kept one too (a vhost's reset
    # leaves a topic's partitions to the topic).
    connection = _connect(broker)
    for name in names:
        declared = connection.channel().queue_declare(name, passive=True)
        assert declared.method.message_count == 3, name
    connection.close()

    # What a restore rebuilt is kept by the next one, while nobody changes it.
    ctl.restore("topics")
    assert _topic_ids(broker, names) == after
