"""Per-connection limits: idle and half-sent requests are closed after their timeouts,
and requests held back while a client does not read its answers are all answered, in
order, once it does. Timeouts and the in-flight limit are set small here."""

from __future__ import annotations

import datetime
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.clients import bootstrap, create_topic
from tests.integration.kafka.wire_client import WireClient, encode_request, request_types

FETCH, METADATA, API_VERSIONS = 1, 3, 18
IDLE_S, INCOMPLETE_S, MAX_IN_FLIGHT = 2.0, 1.0, 4


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = start_broker(
        tmp_path_factory.mktemp("limits") / "data",
        "--set", f"kafka.connections_max_idle_ms={int(IDLE_S * 1000)}",
        "--set", f"kafka.incomplete_request_timeout_ms={int(INCOMPLETE_S * 1000)}",
        "--set", f"kafka.max_in_flight_requests={MAX_IN_FLIGHT}",
    )
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


def api_versions(correlation_id: int) -> bytes:
    m = request_types(API_VERSIONS, 3)
    return encode_request(m.ApiVersionsRequest(client_software_name="limits",
                                               client_software_version="1"), correlation_id)


def fetch(topic: str, correlation_id: int, max_wait_ms: int, max_bytes: int = 1 << 20) -> bytes:
    m = request_types(FETCH, 12)
    return encode_request(m.FetchRequest(
        max_wait=datetime.timedelta(milliseconds=max_wait_ms), min_bytes=1,
        max_bytes=max_bytes, isolation_level=0, session_id=0, session_epoch=-1,
        topics=(m.FetchTopic(topic=topic, partitions=(
            m.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=max_bytes),)),),
        forgotten_topics_data=(), rack_id=""), correlation_id)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the broker closed the socket (EOF or reset), None if it did not."""
    started = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(1 << 16) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def log_lines(broker: BrokerProcess, port: int) -> list[str]:
    return [ln for ln in broker.stderr_text().splitlines() if f"'127.0.0.1', {port})" in ln]


def test_idle_connection_is_closed_after_connections_max_idle_ms(broker: BrokerProcess) -> None:
    idle, busy = WireClient(broker.kafka_port), WireClient(broker.kafka_port)
    idle.send(api_versions(1))
    idle.read_frame()
    started = time.monotonic()
    while time.monotonic() - started < IDLE_S * 1.5:  # a request every 0.3 s keeps it open
        busy.send(api_versions(2))
        busy.read_frame()
        time.sleep(0.3)
    waited = closed_within(idle.sock, IDLE_S * 2)
    assert waited is not None, "the idle connection was not closed"
    assert time.monotonic() - started >= IDLE_S * 0.9
    busy.send(api_versions(3))
    assert struct.unpack_from(">i", busy.read_frame())[0] == 3
    idle.close()
    busy.close()
    assert "Traceback" not in broker.stderr_text()


def test_half_sent_request_is_closed_after_its_timeout_with_one_warning(
    broker: BrokerProcess,
) -> None:
    stalled = socket.create_connection(("127.0.0.1", broker.kafka_port))
    port = stalled.getsockname()[1]
    request = api_versions(1)
    stalled.sendall(request[:10])
    waited = closed_within(stalled, INCOMPLETE_S * 3)
    assert waited is not None and waited >= INCOMPLETE_S * 0.8
    lines = log_lines(broker, port)
    assert len(lines) == 1 and " warning " in lines[0] and "request incomplete" in lines[0]


def test_a_slow_but_steady_sender_is_not_cut_off(broker: BrokerProcess) -> None:
    client = WireClient(broker.kafka_port)
    request = api_versions(7)
    for i in range(0, len(request), 4):  # over ~3 s, longer than the timeout, never silent long
        client.send(request[i:i + 4])
        time.sleep(INCOMPLETE_S / 4)
    assert struct.unpack_from(">i", client.read_frame())[0] == 7
    client.close()


def test_announcing_a_huge_request_costs_only_what_was_sent(broker: BrokerProcess) -> None:
    before = _rss(broker.proc.pid)
    socks = []
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", broker.kafka_port))
        sock.sendall(struct.pack(">i", 100 << 20) + bytes(256 << 10))
        socks.append(sock)
    time.sleep(0.5)
    grown = _rss(broker.proc.pid) - before
    assert grown < 12 << 20, f"RSS grew by {grown >> 20} MiB for 5 x 256 KiB sent"
    for sock in socks:
        assert closed_within(sock, INCOMPLETE_S * 3) is not None
        sock.close()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError("VmRSS")


def test_requests_past_max_in_flight_wait_and_are_answered_in_order(
    broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(broker.kafka_port, topic, partitions=1)
    client = WireClient(broker.kafka_port)
    # Long polls on an empty partition fill the in-flight limit; the ApiVersions
    # requests behind them are read only as the polls answer.
    pipeline = [fetch(topic, i, max_wait_ms=300) if i % 2 == 0 else api_versions(i)
                for i in range(3 * MAX_IN_FLIGHT)]
    client.send(b"".join(pipeline))
    ids = [struct.unpack_from(">i", client.read_frame())[0] for _ in pipeline]
    assert ids == list(range(len(pipeline)))
    client.close()


def test_answers_held_for_a_client_that_does_not_read_all_arrive_once_it_does(
    broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(broker.kafka_port, topic, partitions=1)
    producer = Producer({"bootstrap.servers": bootstrap(broker.kafka_port), "linger.ms": 5})
    for _ in range(32):
        producer.produce(topic, os.urandom(64 << 10), partition=0)
    producer.flush(10)
    client = WireClient(broker.kafka_port, timeout=30)
    n = 60  # 60 answers of 2 MiB: far more than the broker may hold for one connection
    client.send(b"".join(fetch(topic, i, max_wait_ms=0, max_bytes=2 << 20) for i in range(n)))
    time.sleep(1.5)  # not reading: the broker stops after about write_buffer_high_bytes
    sizes = []
    for i in range(n):
        frame = client.read_frame()
        assert struct.unpack_from(">i", frame)[0] == i
        sizes.append(len(frame))
    assert min(sizes) == max(sizes) > 1 << 20  # every answer carried the same records
    client.close()
    assert "Traceback" not in broker.stderr_text()
