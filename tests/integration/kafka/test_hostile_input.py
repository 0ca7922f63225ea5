"""Hostile Kafka requests close one connection with one log line; the broker lives on."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from tests.broker_process import BrokerProcess
from tests.integration.kafka.clients import (
    consume_confluent,
    create_topic,
    messages,
    produce_confluent,
)
from tests.integration.kafka.wire_client import WireClient, encode_request, request_type
from tests.unit.protocols.kafka.kio_values import sample

# Issue 9, items 1 and 3: the exact bytes that aborted the process or raised TypeError.
METADATA_V9_HUGE_ARRAY = bytes.fromhex("000000100003000900000001ffff00ffffffff0f")
PRODUCE_V3_NULL_TOPICS = bytes.fromhex("000000160000000300000001ffffffff000100001388ffffffff")
# The flexible versions the report names: Produce, Fetch, ListOffsets, FindCoordinator,
# JoinGroup, OffsetFetch, CreateTopics, DescribeConfigs.
FLEXIBLE = [(0, 9), (1, 12), (2, 6), (10, 4), (11, 6), (9, 8), (19, 5), (32, 4)]
HUGE_COMPACT = b"\xff\xff\xff\xff\x0f"


def _request_type(key: int, version: int) -> type:
    return request_type(key, version)


def _huge_count_frames(key: int, version: int) -> list[bytes]:
    """The request with a 2^32-2 count written over each position of its body in turn."""
    frame = encode_request(sample(_request_type(key, version)), 1)
    header_end = 4 + 8 + len("wire-test") + 1  # size, fixed header, client id, tags
    out = []
    for at in range(header_end, len(frame)):
        body = frame[4:at] + HUGE_COMPACT + frame[at + len(HUGE_COMPACT) :]
        out.append(len(body).to_bytes(4, "big") + body)
    return out


def _send_and_expect_close(port: int, frame: bytes) -> bool:
    client = WireClient(port, timeout=5)
    try:
        client.send(frame)
        return client.is_closed_by_peer()
    finally:
        client.close()


def test_exact_bytes_from_the_report_close_only_their_connection(
    broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    for frame in (METADATA_V9_HUGE_ARRAY, PRODUCE_V3_NULL_TOPICS):
        assert _send_and_expect_close(broker.kafka_port, frame)
    assert broker.proc.poll() is None
    topic = topic_name()
    create_topic(broker.kafka_port, topic, partitions=1)
    sent = messages(5, 1)
    produce_confluent(broker.kafka_port, topic, sent)
    got = consume_confluent(broker.kafka_port, topic, 1, len(sent))
    assert [m.value for m in got] == [value for _, _, value, _ in sent]
    log = broker.stderr_text()
    assert "Traceback" not in log
    assert log.count("malformed request; closing the connection") == 2


def test_huge_counts_anywhere_in_flexible_requests_never_take_the_broker_down(
    broker: BrokerProcess,
) -> None:
    sent = 0
    for key, version in FLEXIBLE:
        for frame in _huge_count_frames(key, version):
            client = WireClient(broker.kafka_port, timeout=5)
            try:
                client.send(frame)
                # Either refused (closed) or, where the count fell on a plain integer
                # field, answered: what matters is that the process is still here.
                client.sock.settimeout(2)
                with contextlib.suppress(TimeoutError):
                    client.sock.recv(1 << 16)
            finally:
                client.close()
            sent += 1
    assert sent > 200
    assert broker.proc.poll() is None, broker.stderr_text()[-2000:]
    assert "Traceback" not in broker.stderr_text()
