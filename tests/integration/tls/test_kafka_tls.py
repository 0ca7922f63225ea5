"""Kafka over TLS: security.protocol SSL and SASL_SSL with confluent-kafka, kafka-python
and kcat; client certificates (mTLS) and the principal taken from them."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer

from portask.tls import DevFiles
from tests.integration.kafka.test_wire import api_versions_request
from tests.integration.kafka.wire_client import encode_request
from tests.integration.tls.conftest import TlsBroker, start_tls_broker


def _ssl_conf(broker: TlsBroker, *, cert: bool = False, **extra: object) -> dict[str, object]:
    conf: dict[str, object] = {
        "bootstrap.servers": f"127.0.0.1:{broker.port('kafka_tls')}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(broker.files.ca_cert),
    }
    if cert:
        conf["ssl.certificate.location"] = str(broker.files.client_cert)
        conf["ssl.key.location"] = str(broker.files.client_key)
    conf.update(extra)
    return conf


def _topic() -> str:
    return f"tls-{uuid.uuid4().hex[:8]}"


def test_confluent_ssl_produces_and_consumes(tls_broker: TlsBroker) -> None:
    topic = _topic()
    producer = Producer(_ssl_conf(tls_broker))
    delivered: list[tuple[object, int]] = []
    for i in range(3):
        producer.produce(topic, f"m{i}".encode(),
                         on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    assert producer.flush(15) == 0
    assert delivered == [(None, 0), (None, 1), (None, 2)]
    consumer = Consumer(_ssl_conf(tls_broker, **{"group.id": "g", "auto.offset.reset":
                                                 "earliest"}))
    consumer.subscribe([topic])
    got: list[bytes] = []
    for _ in range(100):
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
        if len(got) == 3:
            break
    consumer.close()
    assert got == [b"m0", b"m1", b"m2"]


def test_tls_listener_advertises_itself(tls_broker: TlsBroker) -> None:
    # A client that bootstrapped over TLS must be sent back to the TLS port.
    metadata = AdminClient(_ssl_conf(tls_broker)).list_topics(timeout=10)
    assert [(b.host, b.port) for b in metadata.brokers.values()] == [
        ("127.0.0.1", tls_broker.port("kafka_tls"))]
    plain = AdminClient({"bootstrap.servers": f"127.0.0.1:{tls_broker.proc.kafka_port}"})
    assert [b.port for b in plain.list_topics(timeout=10).brokers.values()] == [
        tls_broker.proc.kafka_port]


def test_confluent_sasl_ssl_logs_in_and_produces(tls_broker: TlsBroker) -> None:
    producer = Producer(_ssl_conf(tls_broker, **{
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "guest", "sasl.password": "guest"}))
    delivered: list[object] = []
    producer.produce(_topic(), b"v", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(15) == 0
    assert delivered == [None]


def test_confluent_with_client_certificate_produces(tls_broker: TlsBroker) -> None:
    producer = Producer(_ssl_conf(tls_broker, cert=True))
    delivered: list[object] = []
    producer.produce(_topic(), b"v", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(15) == 0
    assert delivered == [None]


def test_confluent_refuses_a_broker_it_does_not_trust(tls_broker: TlsBroker,
                                                      foreign_files: DevFiles) -> None:
    conf = _ssl_conf(tls_broker, **{"ssl.ca.location": str(foreign_files.ca_cert)})
    with pytest.raises(KafkaException):
        AdminClient(conf).list_topics(timeout=3)


def test_kafka_python_ssl_produces_and_consumes(tls_broker: TlsBroker) -> None:
    topic = _topic()
    common = {"bootstrap_servers": f"127.0.0.1:{tls_broker.port('kafka_tls')}",
              "security_protocol": "SSL", "ssl_cafile": str(tls_broker.files.ca_cert),
              "ssl_certfile": str(tls_broker.files.client_cert),
              "ssl_keyfile": str(tls_broker.files.client_key)}
    producer = KafkaProducer(**common)
    assert producer.send(topic, b"over tls").get(10).offset == 0
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=5000,
                             **common)
    assert [m.value for m in consumer] == [b"over tls"]
    consumer.close()


def test_kafka_python_sasl_ssl_logs_in(tls_broker: TlsBroker) -> None:
    producer = KafkaProducer(
        bootstrap_servers=f"127.0.0.1:{tls_broker.port('kafka_tls')}",
        security_protocol="SASL_SSL", ssl_cafile=str(tls_broker.files.ca_cert),
        sasl_mechanism="PLAIN", sasl_plain_username="guest", sasl_plain_password="guest")
    assert producer.send(_topic(), b"v").get(10).offset == 0
    producer.close()


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_ssl_with_client_certificate(tls_broker: TlsBroker) -> None:
    topic = _topic()
    base = ["kcat", "-b", f"127.0.0.1:{tls_broker.port('kafka_tls')}",
            "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={tls_broker.files.ca_cert}",
            "-X", f"ssl.certificate.location={tls_broker.files.client_cert}",
            "-X", f"ssl.key.location={tls_broker.files.client_key}"]
    subprocess.run([*base, "-P", "-t", topic], input=b"from-kcat\n", check=True, timeout=30)
    out = subprocess.run([*base, "-C", "-t", topic, "-e", "-c", "1", "-f", "%s"],
                         capture_output=True, check=True, timeout=30)
    assert out.stdout == b"from-kcat"


def _tls_socket(broker: TlsBroker, files: DevFiles) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(broker.files.ca_cert))
    ctx.load_cert_chain(str(files.client_cert), str(files.client_key))
    raw = socket.create_connection(("127.0.0.1", broker.port("kafka_tls")), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


@pytest.fixture(scope="module")
def mtls_broker(tmp_path_factory: pytest.TempPathFactory) -> TlsBroker:
    """Client certificates required; SASL required, which a certificate satisfies."""
    broker = start_tls_broker(tmp_path_factory.mktemp("mtls") / "data",
                              "--set", "tls.client_auth=required",
                              env={"PORTASK_KAFKA_SASL_REQUIRED": "true"})
    yield broker  # type: ignore[misc]
    broker.proc.stop()


def test_required_mode_refuses_a_client_without_certificate(mtls_broker: TlsBroker) -> None:
    with pytest.raises(KafkaException):
        AdminClient(_ssl_conf(mtls_broker)).list_topics(timeout=3)
    _assert_one_warning_per_failure(mtls_broker)


def test_required_mode_refuses_a_certificate_from_another_ca(
    mtls_broker: TlsBroker, foreign_files: DevFiles
) -> None:
    conf = _ssl_conf(mtls_broker, **{"ssl.certificate.location": str(foreign_files.client_cert),
                                     "ssl.key.location": str(foreign_files.client_key)})
    with pytest.raises(KafkaException):
        AdminClient(conf).list_topics(timeout=3)
    _assert_one_warning_per_failure(mtls_broker)


def test_certificate_counts_as_authentication_when_sasl_is_required(
    mtls_broker: TlsBroker,
) -> None:
    producer = Producer(_ssl_conf(mtls_broker, cert=True))
    delivered: list[object] = []
    producer.produce(_topic(), b"v", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(15) == 0
    assert delivered == [None]


def _assert_one_warning_per_failure(broker: TlsBroker) -> None:
    text = broker.proc.stderr_text()
    assert "Traceback" not in text
    failures = [line for line in text.splitlines() if "TLS handshake failed" in line]
    assert failures, text
    assert all("warning" in line and "protocol=kafka" in line for line in failures)


def test_unmatched_principal_mapping_closes_the_connection(tmp_path: Path) -> None:
    broker = start_tls_broker(
        tmp_path / "data", "--set", "tls.client_auth=required",
        "--set", "kafka.ssl_principal_mapping_rules=RULE:^CN=(admin),O=(.*)$/$1/")
    try:
        with _tls_socket(broker, broker.files) as sock:
            try:
                sock.sendall(encode_request(api_versions_request(3), 1))
                closed = sock.recv(4) == b""
            except (ConnectionError, ssl.SSLError):
                closed = True
        assert closed
        text = broker.proc.stderr_text()
        assert "TLS client refused" in text and "no ssl.principal.mapping rule" in text
        assert "Traceback" not in text
    finally:
        broker.proc.stop()


@pytest.mark.parametrize(("rules", "principal"), [
    ("DEFAULT", "User:CN=guest,O=Portask dev"),
    ("RULE:^CN=([^,]+),.*$/$1/L,DEFAULT", "User:guest"),
])
def test_the_certificate_subject_is_the_principal_acls_name(
    tmp_path: Path, rules: str, principal: str
) -> None:
    """DEFAULT maps the dev client certificate to User:CN=guest,O=Portask dev; a rule
    maps it to User:guest. Either way the authorizer (here: super users) sees that name."""
    broker = start_tls_broker(
        tmp_path / "data", "--set", "tls.client_auth=optional",
        "--set", "kafka.authorizer=true", "--set", f"kafka.super_users={principal}",
        "--set", f"kafka.ssl_principal_mapping_rules={rules}")
    try:
        producer = Producer(_ssl_conf(broker, cert=True))
        delivered: list[KafkaError | None] = []
        producer.produce(_topic(), b"v", on_delivery=lambda e, m: delivered.append(e))
        assert producer.flush(15) == 0
        assert delivered == [None]
        # Without the certificate the same client is User:ANONYMOUS: refused.
        anonymous = Producer(_ssl_conf(broker, **{"enable.idempotence": False}))
        errors: list[KafkaError | None] = []
        anonymous.produce(_topic(), b"v", on_delivery=lambda e, m: errors.append(e))
        anonymous.flush(15)
        assert len(errors) == 1 and errors[0] is not None
        assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        broker.proc.stop()
