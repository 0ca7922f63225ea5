"""``tls.only``: the plain Kafka, AMQP, HTTP and management ports do not listen, and TLS
clients (pika, confluent-kafka, curl) work on the TLS ones."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from confluent_kafka import Consumer, Producer

from portask.cli import main
from tests.broker_process import BrokerProcess, free_port, start_broker

TLS_LISTENERS = ("kafka_tls", "amqp_tls", "http_tls", "management_tls")


class TlsOnly:
    def __init__(self, proc: BrokerProcess, plain_ports: dict[str, int]) -> None:
        self.proc = proc
        self.plain_ports = plain_ports
        self.ca = proc.data_dir / "tls" / "ca.pem"

    def port(self, listener: str) -> int:
        return self.proc.ports[listener]


@pytest.fixture(scope="module")
def tls_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsOnly]:
    # Plain ports named (not 0), so the test can knock on the very ports that would listen.
    plain = {name: free_port() for name in ("kafka", "amqp", "http", "management")}
    proc = start_broker(
        tmp_path_factory.mktemp("tls-only") / "data", "--dev-tls",
        "--kafka-port", str(plain["kafka"]), "--amqp-port", str(plain["amqp"]),
        "--http-port", str(plain["http"]),
        "--set", f"http.management_port={plain['management']}",
        "--set", "tls.only=true", "--set", "kafka.tls_port=0", "--set", "amqp.tls_port=0",
        "--set", "http.tls_port=0", "--set", "http.management_tls_port=0",
        expect=TLS_LISTENERS)
    yield TlsOnly(proc, plain)
    proc.stop()


def test_only_the_tls_listeners_are_announced(tls_only: TlsOnly) -> None:
    announced = {line.split()[1] for line in tls_only.proc.stdout_lines
                 if " listening on " in line}
    assert announced == set(TLS_LISTENERS)


@pytest.mark.parametrize("listener", ["kafka", "amqp", "http", "management"])
def test_plain_ports_refuse_connections(tls_only: TlsOnly, listener: str) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", tls_only.plain_ports[listener]), timeout=5)


def test_pika_works_over_amqps(tls_only: TlsOnly) -> None:
    ctx = ssl.create_default_context(cafile=str(tls_only.ca))
    params = pika.ConnectionParameters(
        host="localhost", port=tls_only.port("amqp_tls"),
        ssl_options=pika.SSLOptions(ctx, "localhost"),
        credentials=pika.PlainCredentials("guest", "guest"), connection_attempts=1)
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.queue_declare("tls-only-q")
    channel.basic_publish("", "tls-only-q", b"sealed")
    method, _props, body = channel.basic_get("tls-only-q", auto_ack=True)
    connection.close()
    assert method is not None and body == b"sealed"


def test_confluent_kafka_produces_and_consumes_over_ssl(tls_only: TlsOnly) -> None:
    # Metadata must advertise the TLS listener: there is no plain one to be sent to.
    conf = {"bootstrap.servers": f"127.0.0.1:{tls_only.port('kafka_tls')}",
            "security.protocol": "SSL", "ssl.ca.location": str(tls_only.ca)}
    topic = f"tls-only-{uuid.uuid4().hex[:8]}"
    producer = Producer(conf)
    producer.produce(topic, b"sealed")
    assert producer.flush(15) == 0
    consumer = Consumer({**conf, "group.id": "tls-only", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = None
    for _ in range(100):
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            got = msg.value()
            break
    consumer.close()
    assert got == b"sealed"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("listener", ["http_tls", "management_tls"])
def test_curl_reaches_https_and_not_http(tls_only: TlsOnly, listener: str) -> None:
    path = "/health" if listener == "http_tls" else "/api/overview"
    url = f"https://localhost:{tls_only.port(listener)}{path}"
    ok = subprocess.run(["curl", "-sf", "-u", "guest:guest", "--cacert", str(tls_only.ca),
                         url], capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    plain = "http" if listener == "http_tls" else "management"
    refused = subprocess.run(
        ["curl", "-s", f"http://localhost:{tls_only.plain_ports[plain]}{path}"],
        capture_output=True, timeout=30)
    assert refused.returncode == 7  # curl: failed to connect


def test_tls_only_without_certificates_is_a_config_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--data-dir", str(tmp_path / "data"), "--set", "tls.only=true"])
    assert code != 0
    assert "tls.only: true needs TLS on" in capsys.readouterr().err
