"""SASL PLAIN and SCRAM-SHA-256/512 logins with real clients; wrong passwords fail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from kafka import KafkaProducer

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
