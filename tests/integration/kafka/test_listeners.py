"""Named Kafka listeners (kafka.listeners, kafka.advertised_listeners,
kafka.listener_security_protocol_map): each listener tells its clients its own address,
as the docker-compose pattern needs (containers on one name, the host on another).

Both listeners bind loopback here; what differs is what each advertises (``localhost``
on one, ``127.0.0.1`` on the other, each with its own port), which is what a client
sees in Metadata, FindCoordinator and DescribeCluster and then connects to.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.client import AIOKafkaClient
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from tests.broker_process import BrokerProcess, free_port, start_broker
from tests.integration.kafka.clients import consume_confluent


@dataclass
class TwoListeners:
    proc: BrokerProcess
    internal: int  # INTERNAL: bound on 127.0.0.1, advertised as localhost
    host: int  # HOST: bound on 127.0.0.1, advertised as 127.0.0.1

    def bootstrap(self, name: str) -> str:
        return f"127.0.0.1:{self.internal if name == 'INTERNAL' else self.host}"

    def advertised(self, name: str) -> tuple[str, int]:
        return ("localhost", self.internal) if name == "INTERNAL" else ("127.0.0.1", self.host)


@pytest.fixture(scope="module")
def two_listeners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoListeners]:
    internal, host = free_port(), free_port()
    proc = start_broker(
        tmp_path_factory.mktemp("listeners") / "data",
        "--set", f"kafka.listeners=INTERNAL://127.0.0.1:{internal},HOST://:{host}",
        "--set", f"kafka.advertised_listeners=INTERNAL://localhost:{internal},"
                 f"HOST://127.0.0.1:{host}",
        "--set", "kafka.listener_security_protocol_map=INTERNAL:PLAINTEXT,HOST:PLAINTEXT",
        expect=("kafka_internal", "kafka_host", "amqp", "http"))
    assert (proc.ports["kafka_internal"], proc.ports["kafka_host"]) == (internal, host)
    yield TwoListeners(proc, internal, host)
    proc.stop()


LISTENERS = ("INTERNAL", "HOST")


@pytest.mark.parametrize("name", LISTENERS)
def test_confluent_sees_the_address_of_the_listener_it_connected_to(
        two_listeners: TwoListeners, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": two_listeners.bootstrap(name)})
    metadata = admin.list_topics(timeout=10)
    assert [(b.host, b.port) for b in metadata.brokers.values()] == [
        two_listeners.advertised(name)]
    cluster = admin.describe_cluster().result(10)
    assert [(n.host, n.port) for n in cluster.nodes] == [two_listeners.advertised(name)]


@pytest.mark.parametrize("name", LISTENERS)
def test_confluent_produces_and_its_group_coordinator_is_its_listener(
        two_listeners: TwoListeners, name: str) -> None:
    topic, group = f"l-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": two_listeners.bootstrap(name)})
    producer.produce(topic, b"hello " + name.encode())
    assert producer.flush(15) == 0
    consumer = Consumer({"bootstrap.servers": two_listeners.bootstrap(name), "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = None
    for _ in range(100):
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            got = msg.value()
            consumer.commit(msg, asynchronous=False)
            break
    assert got == b"hello " + name.encode()
    admin = AdminClient({"bootstrap.servers": two_listeners.bootstrap(name)})
    described = admin.describe_consumer_groups([group])[group].result(10)
    consumer.close()
    coordinator = described.coordinator
    assert (coordinator.host, coordinator.port) == two_listeners.advertised(name)


@pytest.mark.parametrize("name", LISTENERS)
def test_kafka_python_sees_its_listener_and_round_trips(two_listeners: TwoListeners,
                                                        name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=two_listeners.bootstrap(name))
    cluster = admin.describe_cluster()
    admin.close()
    assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [
        two_listeners.advertised(name)]
    topic = f"kp-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=two_listeners.bootstrap(name))
    producer.send(topic, b"via " + name.encode()).get(10)
    producer.close(5)
    consumer = KafkaConsumer(topic, bootstrap_servers=two_listeners.bootstrap(name),
                             group_id=f"g-{uuid.uuid4().hex[:8]}",
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    values = [m.value for m in consumer]
    consumer.close()
    assert values[:1] == [b"via " + name.encode()]


@pytest.mark.parametrize("name", LISTENERS)
def test_aiokafka_sees_its_listener(two_listeners: TwoListeners, name: str) -> None:
    async def brokers() -> list[tuple[str, int]]:
        client = AIOKafkaClient(bootstrap_servers=two_listeners.bootstrap(name))
        await client.bootstrap()
        try:
            return [(b.host, b.port) for b in client.cluster.brokers()]
        finally:
            await client.close()

    assert asyncio.run(brokers()) == [two_listeners.advertised(name)]


def test_a_record_produced_on_one_listener_is_read_on_the_other(
        two_listeners: TwoListeners) -> None:
    topic = f"x-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": two_listeners.bootstrap("INTERNAL")})
    producer.produce(topic, b"from the container network")
    assert producer.flush(15) == 0
    got = consume_confluent(two_listeners.host, topic, 1, 1)
    assert [m.value for m in got] == [b"from the container network"]


def test_broker_configs_list_every_listener(two_listeners: TwoListeners) -> None:
    admin = AdminClient({"bootstrap.servers": two_listeners.bootstrap("HOST")})
    resource = ConfigResource(ConfigResource.Type.BROKER, "0")
    configs = admin.describe_configs([resource])[resource].result(10)
    internal, host = two_listeners.internal, two_listeners.host
    assert configs["listeners"].value == (
        f"INTERNAL://127.0.0.1:{internal},HOST://127.0.0.1:{host}")
    assert configs["advertised.listeners"].value == (
        f"INTERNAL://localhost:{internal},HOST://127.0.0.1:{host}")
    assert configs["listener.security.protocol.map"].value == (
        "INTERNAL:PLAINTEXT,HOST:PLAINTEXT")


def test_a_sasl_listener_requires_a_login_and_a_plaintext_one_does_not(
        tmp_path: Path) -> None:
    plain, sasl = free_port(), free_port()
    proc = start_broker(
        tmp_path / "data",
        "--set", f"kafka.listeners=PLAINTEXT://127.0.0.1:{plain},"
                 f"SASL_PLAINTEXT://127.0.0.1:{sasl}",
        "--set", "auth.users=alice:secret",
        expect=("kafka_plaintext", "kafka_sasl_plaintext", "http"))
    try:
        topic = f"s-{uuid.uuid4().hex[:8]}"
        anonymous = Producer({"bootstrap.servers": f"127.0.0.1:{plain}"})
        anonymous.produce(topic, b"open")
        assert anonymous.flush(15) == 0
        login = {"bootstrap.servers": f"127.0.0.1:{sasl}", "security.protocol": "SASL_PLAINTEXT",
                 "sasl.mechanism": "SCRAM-SHA-256"}
        alice = AdminClient({**login, "sasl.username": "alice", "sasl.password": "secret"})
        assert [(b.host, b.port) for b in alice.list_topics(timeout=10).brokers.values()] == [
            ("127.0.0.1", sasl)]
        # Without a login the SASL listener answers nothing but the handshake's APIs.
        refused = AdminClient({"bootstrap.servers": f"127.0.0.1:{sasl}"})
        with pytest.raises(KafkaException):
            refused.list_topics(timeout=3)
    finally:
        proc.stop()


def test_an_ssl_listener_serves_tls_and_advertises_itself(tmp_path: Path) -> None:
    plain, secure = free_port(), free_port()
    proc = start_broker(
        tmp_path / "data", "--dev-tls",
        "--set", f"kafka.listeners=INSIDE://127.0.0.1:{plain},SECURE://127.0.0.1:{secure}",
        "--set", "kafka.listener_security_protocol_map=INSIDE:PLAINTEXT,SECURE:SSL",
        "--set", "amqp.tls_port=null", "--set", "http.tls_port=null",
        expect=("kafka_inside", "kafka_secure", "http"))
    try:
        ca = tmp_path / "data" / "tls" / "ca.pem"
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{secure}",
                             "security.protocol": "SSL", "ssl.ca.location": str(ca)})
        assert [(b.host, b.port) for b in admin.list_topics(timeout=10).brokers.values()] == [
            ("127.0.0.1", secure)]
        # The TLS listener of kafka.tls_port is not started: kafka.listeners replaces it.
        assert "kafka_tls" not in proc.ports and "kafka" not in proc.ports
    finally:
        proc.stop()


@pytest.mark.parametrize(("settings", "message"), [
    (["kafka.listeners=INTERNAL://0.0.0.0:9092"],
     "kafka.listener_security_protocol_map: '' has no entry for listener 'INTERNAL'"),
    (["kafka.listeners=INTERNAL:/0.0.0.0:9092"],
     "kafka.listeners: 'INTERNAL:/0.0.0.0:9092' in 'INTERNAL:/0.0.0.0:9092' is not "
     "NAME://HOST:PORT"),
    (["kafka.listeners=PLAINTEXT://:9092", "kafka.advertised_listeners=OUTSIDE://x:1"],
     "kafka.advertised_listeners: 'OUTSIDE://x:1' names listener 'OUTSIDE', which "
     "kafka.listeners ('PLAINTEXT://:9092') does not"),
    (["kafka.listeners=A://:9092", "kafka.listener_security_protocol_map=A:TLS"],
     "kafka.listener_security_protocol_map: 'A:TLS' in 'A:TLS' names security protocol 'TLS'"),
    (["kafka.listeners=SSL://:9093"],
     "kafka.listener_security_protocol_map: listener 'SSL' of kafka.listeners "
     "('SSL://:9093') is SSL, which needs TLS on"),
])
def test_a_bad_listener_setting_stops_the_broker_naming_key_and_value(
        tmp_path: Path, settings: list[str], message: str) -> None:
    args = [a for s in settings for a in ("--set", s)]
    with pytest.raises(RuntimeError) as err:
        start_broker(tmp_path / "data", *args)
    assert f"portask: config error: {message}" in str(err.value)
