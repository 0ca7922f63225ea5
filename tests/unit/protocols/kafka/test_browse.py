"""The Kafka formats the HTTP API uses: one-record batches, records decoded whole,
consumer-protocol blobs, and the default partitioner's hash."""

from __future__ import annotations

import struct

from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from portask.broker.log import compression
from portask.protocols.kafka import browse, records
from portask.protocols.kafka.browse import KafkaRecordCodec, build_batch, murmur2

LIMIT = 1 << 20


@given(st.binary(max_size=64))
def test_murmur2_matches_kafka_python(data: bytes) -> None:
    assert murmur2(data) & 0x7FFFFFFF == kafka_python_murmur2(data) & 0x7FFFFFFF


def test_murmur2_known_java_values() -> None:
    # From Kafka's UtilsTest.testMurmur2 (signed ints there).
    assert struct.unpack(">i", struct.pack(">I", murmur2(b"21")))[0] == -973932308
    assert struct.unpack(">i", struct.pack(">I", murmur2(b"foobar")))[0] == -790332482


@given(key=st.none() | st.binary(max_size=40), value=st.none() | st.binary(max_size=300),
       headers=st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)),
                        max_size=4))
def test_a_built_batch_is_valid_and_decodes_to_what_went_in(
        key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]]) -> None:
    batch = build_batch(key, value, headers, 1_700_000_000_123)
    (info,) = records.parse_batches(batch)
    assert (info.records_count, info.producer_id, info.compression) == (1, -1, 0)
    decoded = KafkaRecordCodec(LIMIT).batch_records(42, memoryview(batch))
    assert decoded.error is None
    (record,) = decoded.records
    assert (record.offset, record.timestamp, record.key, record.value, record.headers) == \
        (42, 1_700_000_000_123, key, value, headers)


def test_compressed_batches_decode_and_control_batches_hold_no_records() -> None:
    batch = build_batch(b"k", b"v" * 1000, [], 5)
    info = records.parse_batches(batch)[0]
    codec = KafkaRecordCodec(LIMIT)
    for name in ("gzip", "snappy", "lz4", "zstd"):
        packed = records.recompress(batch, info, compression.NAMES[name], LIMIT)
        (record,) = codec.batch_records(0, memoryview(packed)).records
        assert record.value == b"v" * 1000, name
    marker = records.control_batch(7, 0, True, 5)
    assert codec.batch_records(3, memoryview(marker)).records == []


def test_damaged_records_are_reported_not_raised() -> None:
    batch = build_batch(b"k", b"value", [("h", b"x")], 5)
    codec = KafkaRecordCodec(LIMIT)
    assert codec.batch_records(0, memoryview(batch[:40])).error is not None
    cut = codec.batch_records(0, memoryview(batch[:-3]))
    assert cut.error is not None and cut.records == []


def test_consumer_protocol_blobs_decode_and_lies_are_empty() -> None:
    codec = KafkaRecordCodec(LIMIT)
    blob = ConsumerProtocolMemberAssignment(0, [("a", [0, 2]), ("b", [1])], b"").encode()
    assert codec.assignment("consumer", blob) == [("a", [0, 2]), ("b", [1])]
    assert codec.assignment("connect", blob) == []
    meta = ConsumerProtocolMemberMetadata(0, ["a", "b"], b"").encode()
    assert codec.subscription("consumer", meta) == ["a", "b"]
    lying = struct.pack(">hi", 0, 2**31 - 1) + b"\x00\x01a"
    assert codec.assignment("consumer", lying) == []
    assert codec.subscription("consumer", lying) == []
    assert codec.assignment("consumer", b"\x00") == []


def test_small_varint_table_is_the_zigzag_varint_of_each_value() -> None:
    table = browse._SMALL_VARINTS
    assert len(table) == 8193
    for n in range(-1, 8192):
        assert table[n + 1] == records.varint(n), n
    assert browse._varint(8192) == records.varint(8192)
