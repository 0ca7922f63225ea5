"""SASL PLAIN and SCRAM-SHA-256/512 logins with real clients; wrong passwords fail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.test_wire import api_versions_request, metadata_request
from tests.integration.kafka.wire_client import WireClient, encode_request, request_types

USERS = "alice:alice-secret,bob:b0b-pw"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(
        tmp_path_factory.mktemp("sasl") / "data",
        env={"PORTASK_KAFKA_SASL_REQUIRED": "true", "PORTASK_AUTH_USERS": USERS},
    )
    yield proc
    proc.stop()


def _confluent(port: int, mechanism: str, user: str, password: str) -> dict[str, object]:
    return {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_logs_in_and_produces(sasl_broker: BrokerProcess, mechanism: str) -> None:
    conf = _confluent(sasl_broker.kafka_port, mechanism, "alice", "alice-secret")
    producer = Producer(conf)
    delivered = []
    producer.produce(
        f"sasl-{mechanism.lower()}",
        b"hello",
        on_delivery=lambda err, msg: delivered.append((err, msg.offset())),
    )
    assert producer.flush(15) == 0
    assert delivered == [(None, 0)]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256"])
def test_confluent_wrong_password_fails(sasl_broker: BrokerProcess, mechanism: str) -> None:
    admin = AdminClient(_confluent(sasl_broker.kafka_port, mechanism, "alice", "nope"))
    with pytest.raises(KafkaException) as err:
        admin.list_topics(timeout=5)
    assert err.value.args[0].name() in ("_AUTHENTICATION", "_TRANSPORT")


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_python_logs_in(sasl_broker: BrokerProcess, mechanism: str) -> None:
    producer = KafkaProducer(
        bootstrap_servers=f"127.0.0.1:{sasl_broker.kafka_port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_plain_username="bob",
        sasl_plain_password="b0b-pw",
    )
    md = producer.send(f"kp-{mechanism.lower()}", b"v").get(10)
    assert md.offset == 0
    producer.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_an_old_client_logs_in_with_raw_sasl_tokens_after_handshake_v0(
    sasl_broker: BrokerProcess, mechanism: str
) -> None:
    # kafka-python pinned to Kafka 0.10 sends SaslHandshake v0, then the tokens as bare
    # size-prefixed frames (no SaslAuthenticate), then old Produce and Fetch versions.
    conf = {
        "bootstrap_servers": f"127.0.0.1:{sasl_broker.kafka_port}",
        "api_version": (0, 10),
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "bob",
        "sasl_plain_password": "b0b-pw",
    }
    topic = f"kp-raw-{mechanism.lower()}"
    producer = KafkaProducer(**conf)
    assert producer.send(topic, b"old", partition=0).get(10).offset == 0
    producer.close()
    consumer = KafkaConsumer(**conf, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(topic, 0)])
    assert [m.value for m in consumer] == [b"old"]
    consumer.close()


def test_a_wrong_password_after_handshake_v0_closes_the_connection_without_an_answer(
    sasl_broker: BrokerProcess,
) -> None:
    client = WireClient(sasl_broker.kafka_port)
    client.send(encode_request(request_types(17, 0).SaslHandshakeRequest(mechanism="PLAIN"), 1))
    _, resp = client.read_response(17, 0)
    assert resp.error_code == 0
    token = b"\0alice\0wrong"
    client.send(len(token).to_bytes(4, "big") + token)
    assert client.is_closed_by_peer()
    client.close()
    # The right password over the same kind of connection gets the empty PLAIN answer,
    # then ordinary requests are served.
    client = WireClient(sasl_broker.kafka_port)
    client.send(encode_request(request_types(17, 0).SaslHandshakeRequest(mechanism="PLAIN"), 1))
    client.read_response(17, 0)
    token = b"\0alice\0alice-secret"
    client.send(len(token).to_bytes(4, "big") + token)
    assert client.read_frame() == b""
    client.send(encode_request(metadata_request("after-raw-login"), 2))
    cid, _ = client.read_response(3, 12)
    assert cid == 2
    client.close()


def test_wrong_password_gets_sasl_authentication_failed_then_close(
    sasl_broker: BrokerProcess,
) -> None:
    client = WireClient(sasl_broker.kafka_port)
    handshake = request_types(17, 1).SaslHandshakeRequest(mechanism="PLAIN")
    client.send(encode_request(handshake, 1))
    _, resp = client.read_response(17, 1)
    assert resp.error_code == 0
    assert set(resp.mechanisms) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
    auth = request_types(36, 2).SaslAuthenticateRequest(auth_bytes=b"\0alice\0wrong")
    client.send(encode_request(auth, 2))
    _, resp = client.read_response(36, 2)
    assert resp.error_code == 58  # SASL_AUTHENTICATION_FAILED
    assert "alice" in resp.error_message
    assert client.is_closed_by_peer()
    client.close()


def test_unknown_mechanism_is_refused_with_the_offered_list(sasl_broker: BrokerProcess) -> None:
    client = WireClient(sasl_broker.kafka_port)
    client.send(encode_request(request_types(17, 1).SaslHandshakeRequest(mechanism="GSSAPI"), 1))
    _, resp = client.read_response(17, 1)
    assert resp.error_code == 33  # UNSUPPORTED_SASL_MECHANISM
    assert "PLAIN" in resp.mechanisms
    client.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_aiokafka_logs_in(sasl_broker: BrokerProcess, mechanism: str) -> None:
    async def run() -> int:
        producer = AIOKafkaProducer(
            bootstrap_servers=f"127.0.0.1:{sasl_broker.kafka_port}",
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism,
            sasl_plain_username="alice",
            sasl_plain_password="alice-secret",
        )
        await producer.start()
        try:
            md = await producer.send_and_wait(f"aio-{mechanism.lower()}", b"v")
            return md.offset
        finally:
            await producer.stop()

    assert asyncio.run(run()) == 0


def test_requests_before_login_close_the_connection(sasl_broker: BrokerProcess) -> None:
    client = WireClient(sasl_broker.kafka_port)
    client.send(encode_request(api_versions_request(), 1))
    _, resp = client.read_response(18, 3)
    assert resp.error_code == 0
    client.send(encode_request(metadata_request("anything"), 2))
    assert client.is_closed_by_peer()
    client.close()


def test_without_sasl_required_plain_clients_still_work(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "data", env={"PORTASK_AUTH_USERS": USERS})
    try:
        producer = Producer(_confluent(broker.kafka_port, "SCRAM-SHA-256", "bob", "b0b-pw"))
        producer.produce("t", b"v")
        assert producer.flush(10) == 0
        plain = Producer({"bootstrap.servers": f"127.0.0.1:{broker.kafka_port}"})
        plain.produce("t", b"v")
        assert plain.flush(10) == 0
    finally:
        broker.stop()
