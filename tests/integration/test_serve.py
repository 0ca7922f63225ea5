"""`portask serve` as a user runs it: a real process, real sockets, real signals."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from portask import __version__
from tests.broker_process import BrokerProcess, start_broker


def _get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portask", *args],
        capture_output=True, text=True, timeout=30, env=env,
    )


def test_serve_prints_each_listener_and_reports_healthy(broker: BrokerProcess) -> None:
    assert set(broker.ports) == {"kafka", "amqp", "http"}
    assert all(port > 0 for port in broker.ports.values())
    status, ctype, body = _get(broker.http_port, "/health")
    assert status == 200 and ctype.startswith("application/json")
    report = json.loads(body)
    assert report["status"] == "ok"
    assert report["version"] == __version__
    assert report["listeners"]["kafka"] == {
        "address": f"127.0.0.1:{broker.kafka_port}", "state": "listening",
    }
    assert report["listeners"]["amqp"]["state"] == "listening"


def test_metrics_exposes_the_guide_names(broker: BrokerProcess) -> None:
    status, ctype, body = _get(broker.http_port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    for name in (
        "portask_memory_usage_bytes",
        "portask_storage_segments",
        "portask_storage_bytes",
        "portask_storage_flush_duration_seconds_bucket",
        "# TYPE portask_messages_produced_total counter",
        "# TYPE portask_publish_duration_seconds histogram",
        "# TYPE portask_connections_active gauge",
    ):
        assert name in body, name
    rss = next(
        float(line.split()[1]) for line in body.splitlines()
        if line.startswith("portask_memory_usage_bytes ")
    )
    assert 5e6 < rss < 500e6


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_releases_the_data_dir(tmp_path: Path, sig: int) -> None:
    first = start_broker(tmp_path / "data")
    assert first.stop(sig) == 0
    # The lock is released: a second broker can take the same data dir.
    second = start_broker(tmp_path / "data")
    assert second.stop() == 0
    assert "Traceback" not in first.stderr_text()


def test_second_broker_on_same_data_dir_is_refused(broker: BrokerProcess) -> None:
    with pytest.raises(RuntimeError) as err:
        start_broker(broker.data_dir)
    assert "exited with 1" in str(err.value)
    assert f"data dir {broker.data_dir} is in use by another portask process" in str(err.value)
    assert _get(broker.http_port, "/health")[0] == 200


def test_port_in_use_is_a_one_line_error_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError) as err:
            start_broker(tmp_path / "data", "--amqp-port", str(port))
    message = str(err.value)
    assert "exited with 1" in message
    assert f"amqp listener cannot bind 127.0.0.1:{port}: address already in use" in message
    assert "amqp.port / PORTASK_AMQP_PORT" in message


def test_unwritable_data_dir_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RuntimeError) as err:
        start_broker(blocker / "data")
    assert f"data dir {blocker / 'data'} is not usable" in str(err.value)


def test_bad_config_exits_2_naming_key_and_value(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("kafka:\n  port: 99999\n")
    result = _run_cli("serve", "--config", str(cfg), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "kafka.port: 99999 is not valid" in result.stderr
    assert not (tmp_path / "d").exists()


def test_env_setting_is_applied(tmp_path: Path) -> None:
    b = start_broker(tmp_path / "data", env={"PORTASK_KAFKA_ENABLED": "false"},
                     expect=("amqp", "http"))
    try:
        report = json.loads(_get(b.http_port, "/health")[2])
        assert "kafka" not in report["listeners"]
    finally:
        b.stop()


def test_kubernetes_service_link_variables_do_not_stop_the_broker(tmp_path: Path) -> None:
    # What a pod gets when its namespace has a Service named "portask".
    links = {
        "PORTASK_PORT": "tcp://10.0.0.5:9092",
        "PORTASK_SERVICE_HOST": "10.0.0.5",
        "PORTASK_SERVICE_PORT": "9092",
        "PORTASK_PORT_9092_TCP": "tcp://10.0.0.5:9092",
        "PORTASK_PORT_9092_TCP_ADDR": "10.0.0.5",
        "PORTASK_PORT_9092_TCP_PORT": "9092",
        "PORTASK_PORT_9092_TCP_PROTO": "tcp",
    }
    b = start_broker(tmp_path / "data", env={**links, "PORTASK_KAFKA_ENABLED": "false"},
                     expect=("amqp", "http"))
    try:
        report = json.loads(_get(b.http_port, "/health")[2])
        assert "kafka" not in report["listeners"]
        warnings = [line for line in b.stderr_text().splitlines() if "ignoring environment" in line]
        assert len(warnings) == 1
        assert all(name in warnings[0] for name in links)
    finally:
        b.stop()


def test_check_config_and_version() -> None:
    root = Path(__file__).resolve().parents[2]
    ok = _run_cli("check-config", str(root / "configs" / "high_throughput.yaml"))
    assert ok.returncode == 0
    assert "segment_bytes: 1073741824" in ok.stdout
    bad = _run_cli("check-config", "/nonexistent.yaml")
    assert bad.returncode == 2 and "cannot read config file" in bad.stderr
    version = _run_cli("version")
    assert version.stdout.strip() == f"portask {__version__}"


def test_http_errors_are_proper_statuses_and_harm_nothing(broker: BrokerProcess) -> None:
    assert _get(broker.http_port, "/nope")[0] == 404
    req = urllib.request.Request(f"http://127.0.0.1:{broker.http_port}/health", method="POST",
                                 data=b"x")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("POST to /health must be refused")
    except urllib.error.HTTPError as err:
        assert err.code == 405
    # Bodies (the console's API calls) are bounded: a larger one is refused unread.
    with socket.create_connection(("127.0.0.1", broker.http_port), timeout=5) as sock:
        sock.sendall(b"POST /kafka/v1/topics HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 67108864\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413 ")
    with socket.create_connection(("127.0.0.1", broker.http_port), timeout=5) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    # Keep-alive: two requests on one connection, the second a HEAD.
    with socket.create_connection(("127.0.0.1", broker.http_port), timeout=5) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nHEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        data = b""
        while data.count(b"HTTP/1.1 200 OK") < 2:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.endswith(b"\r\n\r\n")  # HEAD: headers only
    assert _get(broker.http_port, "/health")[0] == 200
