"""Brokers with TLS on every listener (``--dev-tls``), and certificates to test with."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from portask.tls import DevFiles, ensure_dev_files
from tests.broker_process import BrokerProcess, start_broker

TLS_LISTENERS = ("kafka_tls", "amqp_tls", "http_tls")


@dataclass
class TlsBroker:
    proc: BrokerProcess
    files: DevFiles  # the dev CA and the client certificate it issued

    def port(self, listener: str) -> int:
        return self.proc.ports[listener]


def start_tls_broker(data_dir: Path, *args: str, management: bool = False,
                     env: dict[str, str] | None = None) -> TlsBroker:
    """``--dev-tls`` with every TLS listener on a free port."""
    ports = ["--set", "kafka.tls_port=0", "--set", "amqp.tls_port=0",
             "--set", "http.tls_port=0",
             "--set", f"http.management_tls_port={0 if management else 'null'}"]
    expect = ("kafka", "amqp", "http", *TLS_LISTENERS,
              *(("management_tls",) if management else ()))
    proc = start_broker(data_dir, "--dev-tls", *ports, *args, expect=expect,
                        management=management, env=env)
    tls_dir = data_dir / "tls"
    files = DevFiles(*(tls_dir / n for n in ("ca.pem", "ca.key", "server.pem", "server.key",
                                              "client.pem", "client.key")))
    return TlsBroker(proc, files)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """Client certificates optional: clients with and without one both connect."""
    broker = start_tls_broker(tmp_path_factory.mktemp("tls") / "data",
                              "--set", "tls.client_auth=optional", management=True)
    yield broker
    broker.proc.stop()


@pytest.fixture(scope="module")
def foreign_files(tmp_path_factory: pytest.TempPathFactory) -> DevFiles:
    """A CA the broker does not trust, and a client certificate it issued."""
    return ensure_dev_files(tmp_path_factory.mktemp("foreign"), "guest", "127.0.0.1")
