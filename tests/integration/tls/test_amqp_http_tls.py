"""AMQPS with pika and aio-pika (PLAIN and EXTERNAL), HTTPS with httpx and curl, and
clients refused by a broker that requires a client certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator

import aio_pika
import httpx
import pika
import pytest

from portask.tls import DevFiles
from tests.integration.tls.conftest import TlsBroker, start_tls_broker


def _client_context(broker: TlsBroker, files: DevFiles | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(broker.files.ca_cert))
    if files is not None:
        ctx.load_cert_chain(str(files.client_cert), str(files.client_key))
    return ctx


def _pika_params(broker: TlsBroker, files: DevFiles | None = None,
                 credentials: pika.credentials.PlainCredentials | None = None,
                 ) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host="localhost", port=broker.port("amqp_tls"),
        ssl_options=pika.SSLOptions(_client_context(broker, files), "localhost"),
        credentials=credentials or pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=5)


def test_pika_publishes_and_consumes_over_amqps(tls_broker: TlsBroker) -> None:
    connection = pika.BlockingConnection(_pika_params(tls_broker))
    channel = connection.channel()
    channel.queue_declare("amqps-q")
    channel.basic_publish("", "amqps-q", b"secret")
    method, _props, body = channel.basic_get("amqps-q", auto_ack=True)
    connection.close()
    assert method is not None and body == b"secret"


def test_pika_external_login_takes_the_certificate_cn(tls_broker: TlsBroker) -> None:
    # The dev client certificate's CN is amqp.default_user ("guest").
    params = _pika_params(tls_broker, tls_broker.files,
                          credentials=pika.credentials.ExternalCredentials())
    connection = pika.BlockingConnection(params)
    assert connection.is_open
    connection.close()


def test_external_is_refused_without_a_certificate(tls_broker: TlsBroker) -> None:
    params = _pika_params(tls_broker, credentials=pika.credentials.ExternalCredentials())
    # Without a certificate EXTERNAL is not offered, so pika finds no common mechanism.
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params)


async def test_aio_pika_publishes_and_consumes_over_amqps(tls_broker: TlsBroker) -> None:
    connection = await aio_pika.connect(
        host="localhost", port=tls_broker.port("amqp_tls"), login="guest",
        password="guest", ssl=True, ssl_context=_client_context(tls_broker))
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("aio-amqps", auto_delete=True)
        await channel.default_exchange.publish(aio_pika.Message(b"hi"), routing_key=queue.name)
        message = await queue.get(timeout=5)
        await message.ack()
        assert message.body == b"hi"


def test_httpx_reads_health_and_management_over_https(tls_broker: TlsBroker) -> None:
    verify = _client_context(tls_broker)
    health = httpx.get(f"https://localhost:{tls_broker.port('http_tls')}/health", verify=verify)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert set(health.json()["listeners"]) >= {"kafka_tls", "amqp_tls", "http_tls"}
    overview = httpx.get(f"https://localhost:{tls_broker.port('management_tls')}/api/overview",
                         auth=("guest", "guest"), verify=verify)
    assert overview.status_code == 200 and "rabbitmq_version" in overview.json()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_checks_the_certificate(tls_broker: TlsBroker) -> None:
    url = f"https://localhost:{tls_broker.port('http_tls')}/health"
    ok = subprocess.run(["curl", "-sf", "--cacert", str(tls_broker.files.ca_cert), url],
                        capture_output=True, timeout=30)
    assert ok.returncode == 0 and b'"status": "ok"' in ok.stdout
    untrusted = subprocess.run(["curl", "-sf", url], capture_output=True, timeout=30)
    assert untrusted.returncode == 60  # curl: peer certificate cannot be authenticated


@pytest.fixture(scope="module")
def required_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    broker = start_tls_broker(tmp_path_factory.mktemp("required") / "data",
                              "--set", "tls.client_auth=required")
    yield broker
    broker.proc.stop()


def test_required_mode_accepts_a_client_certificate(required_broker: TlsBroker) -> None:
    verify = _client_context(required_broker, required_broker.files)
    response = httpx.get(f"https://localhost:{required_broker.port('http_tls')}/health",
                         verify=verify)
    assert response.status_code == 200


def test_required_mode_refuses_clients_without_a_valid_certificate(
    required_broker: TlsBroker, foreign_files: DevFiles
) -> None:
    url = f"https://localhost:{required_broker.port('http_tls')}/health"
    for files in (None, foreign_files):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, verify=_client_context(required_broker, files))
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(_pika_params(required_broker, foreign_files))
    text = required_broker.proc.stderr_text()
    assert "Traceback" not in text
    failed = [line for line in text.splitlines() if "TLS handshake failed" in line]
    # One line per refused connection, each naming the protocol, the peer and the reason.
    assert len(failed) == 3, text
    assert sum("protocol=http" in line for line in failed) == 2
    assert sum("protocol=amqp" in line for line in failed) == 1
    assert all("warning" in line and "peer=" in line and "reason=" in line for line in failed)
