"""Exact-bytes behaviour: ordering of pipelined replies, long polls, versions, bad input."""

from __future__ import annotations

import datetime
import struct
import time
from collections.abc import Callable

from kafka.record.default_records import DefaultRecordBatchBuilder

from tests.broker_process import BrokerProcess
from tests.integration.kafka.clients import consume_confluent, create_topic, produce_confluent
from tests.integration.kafka.wire_client import WireClient, encode_request, request_types

PRODUCE, FETCH, LIST_OFFSETS, METADATA, API_VERSIONS = 0, 1, 2, 3, 18
NO_WAIT = datetime.timedelta(0)


def batch(values: list[bytes], compression: int = 0) -> bytearray:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i, value in enumerate(values):
        builder.append(i, timestamp=None, key=None, value=value, headers=[])
    return builder.build()


def produce_request(topic: str, records: bytes, partition: int = 0, acks: int = 1) -> object:
    m = request_types(PRODUCE, 9)
    return m.ProduceRequest(
        transactional_id=None,
        acks=acks,
        timeout=datetime.timedelta(seconds=5),
        topic_data=(
            m.TopicProduceData(
                name=topic,
                partition_data=(m.PartitionProduceData(index=partition, records=bytes(records)),),
            ),
        ),
    )


def fetch_request(topic: str, offset: int, max_wait_ms: int, min_bytes: int = 1) -> object:
    m = request_types(FETCH, 12)
    return m.FetchRequest(
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=min_bytes,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(
            m.FetchTopic(
                topic=topic,
                partitions=(
                    m.FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=1 << 20),
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )


def metadata_request(topic: str) -> object:
    m = request_types(METADATA, 12)
    return m.MetadataRequest(
        topics=(m.MetadataRequestTopic(topic_id=None, name=topic),),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )


def api_versions_request(version: int = 3) -> object:
    m = request_types(API_VERSIONS, version)
    return m.ApiVersionsRequest(client_software_name="wire", client_software_version="1")


def _still_serving(broker: BrokerProcess) -> None:
    client = WireClient(broker.kafka_port)
    try:
        client.send(encode_request(api_versions_request(), 99))
        cid, resp = client.read_response(API_VERSIONS, 3)
        assert cid == 99 and resp.error_code == 0
    finally:
        client.close()


def test_api_versions_lists_implemented_ranges(kafka_broker: BrokerProcess) -> None:
    client = WireClient(kafka_broker.kafka_port)
    client.send(encode_request(api_versions_request(3), 1))
    cid, resp = client.read_response(API_VERSIONS, 3)
    ranges = {a.api_key: (a.min_version, a.max_version) for a in resp.api_keys}
    assert cid == 1 and resp.error_code == 0
    # Every API served, at the versions a Kafka 3.7 broker serves (validVersions of its
    # message definitions), old ones included; ListGroups goes to Kafka 4.0's v5.
    served_as_kafka_37 = {
        PRODUCE: (0, 10), FETCH: (0, 16), 2: (0, 8), METADATA: (0, 12), 8: (0, 9),
        9: (0, 9), 10: (0, 4), 11: (0, 9), 12: (0, 4), 13: (0, 5), 14: (0, 5), 15: (0, 5),
        16: (0, 5), API_VERSIONS: (0, 3), 19: (0, 7), 20: (0, 6), 21: (0, 2), 22: (0, 4),
        23: (0, 4), 24: (0, 4), 25: (0, 3), 26: (0, 3), 28: (0, 3), 32: (0, 4), 33: (0, 2),
        36: (0, 2),
        37: (0, 3), 42: (0, 2), 44: (0, 1), 47: (0, 0), 60: (0, 1), 65: (0, 0),
        34: (0, 2), 35: (0, 4), 43: (0, 2), 45: (0, 0), 46: (0, 0), 17: (0, 1),
    }
    assert {k: ranges[k] for k in served_as_kafka_37} == served_as_kafka_37
    assert ranges[75] == (0, 0)  # DescribeTopicPartitions: Kafka 3.8's, for 3.8+ admin clients
    # Kafka 4.0's consumer group protocol (KIP-848), with ListGroups v5 (above) beside it.
    assert (ranges[68], ranges[69]) == ((0, 1), (0, 1))


def test_unsupported_api_versions_version_gets_error_35_and_the_list(
    kafka_broker: BrokerProcess,
) -> None:
    client = WireClient(kafka_broker.kafka_port)
    # An ApiVersions v9 request: header v2 then a body we cannot know; KIP-511 says
    # answer in v0 with UNSUPPORTED_VERSION and our ranges.
    header = struct.pack(">hhih", API_VERSIONS, 9, 5, 4) + b"test" + b"\x00"
    body = b"\x05wire\x021\x00"
    client.send(struct.pack(">i", len(header + body)) + header + body)
    cid, resp = client.read_response(API_VERSIONS, 0)
    assert cid == 5
    assert resp.error_code == 35
    assert any(a.api_key == PRODUCE and a.max_version == 10 for a in resp.api_keys)


def test_pipelined_requests_are_answered_in_order_behind_a_long_poll(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    client = WireClient(kafka_broker.kafka_port)
    started = time.monotonic()
    client.send(
        encode_request(fetch_request(topic, 0, max_wait_ms=400), 1)
        + encode_request(metadata_request(topic), 2)
        + encode_request(api_versions_request(), 3)
    )
    cid1, fetched = client.read_response(FETCH, 12)
    waited = time.monotonic() - started
    cid2, _ = client.read_response(METADATA, 12)
    cid3, _ = client.read_response(API_VERSIONS, 3)
    assert (cid1, cid2, cid3) == (1, 2, 3)
    assert waited >= 0.35  # the empty fetch waited for max_wait_ms
    assert fetched.responses[0].partitions[0].records in (None, b"")


def test_long_poll_is_woken_by_an_append(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    waiting = WireClient(kafka_broker.kafka_port)
    waiting.send(encode_request(fetch_request(topic, 0, max_wait_ms=5000), 7))
    time.sleep(0.3)
    producer = WireClient(kafka_broker.kafka_port)
    sent_at = time.monotonic()
    producer.send(encode_request(produce_request(topic, batch([b"wake up"])), 1))
    _, produced = producer.read_response(PRODUCE, 9)
    assert produced.responses[0].partition_responses[0].error_code == 0
    cid, fetched = waiting.read_response(FETCH, 12)
    assert cid == 7
    assert time.monotonic() - sent_at < 1.0
    part = fetched.responses[0].partitions[0]
    assert part.high_watermark == 1
    assert b"wake up" in part.records


def test_long_poll_sees_an_append_made_before_it_began_waiting(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    # One write: the Fetch finds nothing and becomes a long poll, and the Produce behind
    # it appends in the same read, before the long poll has started watching. The poll
    # must see that record at once, not after max_wait_ms.
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    client = WireClient(kafka_broker.kafka_port)
    started = time.monotonic()
    client.send(encode_request(fetch_request(topic, 0, max_wait_ms=5000), 1)
                + encode_request(produce_request(topic, batch([b"just in time"])), 2))
    cid, fetched = client.read_response(FETCH, 12)
    assert cid == 1 and time.monotonic() - started < 2.0
    assert b"just in time" in fetched.responses[0].partitions[0].records
    assert client.read_response(PRODUCE, 9)[0] == 2


def test_bad_crc_gets_corrupt_message_and_nothing_is_stored(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    client = WireClient(kafka_broker.kafka_port)
    bad = batch([b"a", b"b"])
    bad[-1] ^= 0xFF  # flip a bit in the last record: the CRC no longer matches
    client.send(encode_request(produce_request(topic, bad), 1))
    _, resp = client.read_response(PRODUCE, 9)
    part = resp.responses[0].partition_responses[0]
    assert part.error_code == 2  # CORRUPT_MESSAGE
    assert "CRC" in (part.error_message or "")
    # A good batch on the same connection still lands at offset 0.
    client.send(encode_request(produce_request(topic, batch([b"good"])), 2))
    _, resp = client.read_response(PRODUCE, 9)
    assert resp.responses[0].partition_responses[0].base_offset == 0


def test_oversized_batch_gets_message_too_large(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1, {"max.message.bytes": "1000"})
    client = WireClient(kafka_broker.kafka_port)
    client.send(encode_request(produce_request(topic, batch([b"x" * 2000])), 1))
    _, resp = client.read_response(PRODUCE, 9)
    assert resp.responses[0].partition_responses[0].error_code == 10  # MESSAGE_TOO_LARGE


def test_unknown_partition_and_out_of_range_fetch(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    client = WireClient(kafka_broker.kafka_port)
    client.send(encode_request(produce_request(topic, batch([b"x"]), partition=5), 1))
    _, resp = client.read_response(PRODUCE, 9)
    assert resp.responses[0].partition_responses[0].error_code == 3  # UNKNOWN_TOPIC_OR_PARTITION
    client.send(encode_request(fetch_request(topic, 10, max_wait_ms=0), 2))
    _, fetched = client.read_response(FETCH, 12)
    assert fetched.responses[0].partitions[0].error_code == 1  # OFFSET_OUT_OF_RANGE


def test_garbage_unknown_keys_and_oversized_frames_close_only_that_connection(
    kafka_broker: BrokerProcess,
) -> None:
    bad_inputs = [
        struct.pack(">i", 8) + struct.pack(">hhi", 999, 0, 1),  # unknown API key
        struct.pack(">i", 10) + struct.pack(">hhih", PRODUCE, 99, 1, -1),  # version out of range
        struct.pack(">i", 12) + struct.pack(">hhih", METADATA, 1, 1, -1) + b"\xff\xff",  # garbage
        struct.pack(">i", 0x7FFFFFFF),  # frame larger than socket_request_max_bytes
        struct.pack(">i", 3) + b"abc",  # shorter than any request header
    ]
    for data in bad_inputs:
        client = WireClient(kafka_broker.kafka_port)
        client.send(data)
        assert client.is_closed_by_peer(), data
        client.close()
    _still_serving(kafka_broker)


def test_truncated_frame_then_disconnect_harms_nothing(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    client = WireClient(kafka_broker.kafka_port)
    whole = encode_request(produce_request(topic, batch([b"never"])), 1)
    client.send(whole[: len(whole) // 2])
    client.close()
    produce_confluent(kafka_broker.kafka_port, topic, [(0, b"k", b"kept", [])])
    got = consume_confluent(kafka_broker.kafka_port, topic, 1, 1, timeout=5)
    assert [m.value for m in got] == [b"kept"]
    assert got[0].offset == 0


def test_metadata_advertises_the_configured_or_the_dialled_address(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient

    from tests.broker_process import start_broker

    configured = start_broker(tmp_path / "a", env={"PORTASK_KAFKA_ADVERTISED_HOST": "localhost"})
    try:
        md = AdminClient({"bootstrap.servers": f"127.0.0.1:{configured.kafka_port}"}).list_topics(
            timeout=10
        )
        assert [(b.host, b.port) for b in md.brokers.values()] == [
            ("localhost", configured.kafka_port)
        ]
    finally:
        configured.stop()
    wildcard = start_broker(tmp_path / "b", "--host", "0.0.0.0")
    try:
        md = AdminClient({"bootstrap.servers": f"127.0.0.1:{wildcard.kafka_port}"}).list_topics(
            timeout=10
        )
        # Listening on every address: each client is told the address it connected to.
        assert [(b.host, b.port) for b in md.brokers.values()] == [
            ("127.0.0.1", wildcard.kafka_port)
        ]
    finally:
        wildcard.stop()


def test_fetch_waiting_on_a_deleted_topic_gets_an_error_not_a_closed_connection(
    kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    from confluent_kafka.admin import AdminClient

    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    client = WireClient(kafka_broker.kafka_port)
    client.send(encode_request(fetch_request(topic, 0, max_wait_ms=3000), 1))
    time.sleep(0.2)
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_broker.kafka_port}"})
    admin.delete_topics([topic])[topic].result(10)
    _, fetched = client.read_response(FETCH, 12)
    assert fetched.responses[0].partitions[0].error_code == 3
    client.close()


def test_metadata_naming_a_topic_by_neither_name_nor_id_is_answered_with_an_error(
    kafka_broker: BrokerProcess,
) -> None:
    # Found by the end-to-end fuzzer: these closed the connection with a traceback.
    client = WireClient(kafka_broker.kafka_port)
    try:
        for version in (10, 11):
            m = request_types(METADATA, version)
            nameless = m.MetadataRequestTopic(topic_id=None, name=None)
            request = m.MetadataRequest(
                topics=(nameless, m.MetadataRequestTopic(topic_id=None, name="named")),
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
                **({"include_cluster_authorized_operations": False} if version == 10 else {}),
            )
            client.send(encode_request(request, version))
            cid, resp = client.read_response(METADATA, version)
            assert cid == version
            # Kafka's answer (MetadataRequest.getErrorResponse): INVALID_REQUEST for every
            # topic, "" for the name this version cannot carry as null.
            assert [(t.name, t.error_code) for t in resp.topics] == [("", 42), ("named", 42)]
        m = request_types(METADATA, 12)
        client.send(encode_request(m.MetadataRequest(
            topics=(m.MetadataRequestTopic(topic_id=None, name=None),),
            allow_auto_topic_creation=False, include_topic_authorized_operations=False), 12))
        cid, resp = client.read_response(METADATA, 12)
        assert cid == 12
        assert [(t.name, t.error_code) for t in resp.topics] == [(None, 100)]  # UNKNOWN_TOPIC_ID
    finally:
        client.close()
    assert "Traceback" not in kafka_broker.stderr_text()
