"""Kafka primitives and headers, checked against kio's and kafka-python's encoders."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kafka.record.util import encode_varint
from kio.serial import writers

from portask.protocols.kafka import records, wire
from portask.protocols.kafka.wire import MalformedRequest

UNSIGNED = [0, 1, 127, 128, 300, 16_383, 16_384, 2**31 - 1, 2**32 - 1, 2**63 - 1]
SIGNED = [0, 1, -1, 63, -64, 64, -65, 2**31 - 1, -(2**31), 2**62, -(2**62)]


def written(write: Callable[[io.BytesIO, Any], None], value: Any) -> bytes:
    buf = io.BytesIO()
    write(buf, value)
    return buf.getvalue()


@pytest.mark.parametrize("value", UNSIGNED)
def test_unsigned_varints_match_kio_and_read_back(value: int) -> None:
    encoded = wire.uvarint(value)
    assert encoded == written(writers.write_unsigned_varlong, value)
    # Read back from the middle of a buffer: the position after it is returned too.
    assert wire.read_uvarint(b"\xff" + encoded + b"\x01", 1) == (value, 1 + len(encoded))


@pytest.mark.parametrize("value", SIGNED)
def test_the_record_formats_zigzag_varint_matches_kafka_python(value: int) -> None:
    expected = bytearray()
    encode_varint(value, expected.append)
    assert records._varint(value) == bytes(expected)
    assert records._read_varint(records._varint(value), 0) == (value, len(expected))


def test_a_truncated_varint_is_malformed() -> None:
    with pytest.raises(MalformedRequest, match="truncated varint"):
        wire.read_uvarint(b"\x80\x80", 0)


def test_a_varint_longer_than_64_bits_is_malformed() -> None:
    with pytest.raises(MalformedRequest, match="longer than 64 bits"):
        wire.read_uvarint(b"\xff" * 10 + b"\x01", 0)


@pytest.mark.parametrize("text", ["", "topic", "héllo ✓"])
def test_strings_in_both_forms_match_kio(text: str) -> None:
    assert wire.string(text, False) == written(writers.write_legacy_string, text)
    assert wire.string(text, True) == written(writers.write_compact_string, text)
    assert wire.nullable_string(text, True) == written(writers.write_nullable_compact_string, text)


def test_a_null_string_in_both_forms_matches_kio() -> None:
    assert wire.nullable_string(None, False) == written(writers.write_nullable_legacy_string, None)
    assert wire.nullable_string(None, True) == written(writers.write_nullable_compact_string, None)


@pytest.mark.parametrize("count", [0, 1, 200])
def test_array_and_bytes_lengths_in_both_forms_match_kio(count: int) -> None:
    assert wire.array_length(count, False) == written(writers.write_legacy_array_length, count)
    assert wire.array_length(count, True) == written(writers.write_compact_array_length, count)
    assert wire.bytes_length(count, False) == written(writers.write_int32, count)
    assert wire.bytes_length(count, True) == written(writers.write_unsigned_varint, count + 1)


def test_uuids_and_the_null_uuid() -> None:
    some = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    assert wire.uuid_bytes(some) == some.bytes
    assert wire.uuid_bytes(None) == bytes(16)


def test_response_headers_v0_and_v1() -> None:
    assert wire.response_header(7, flexible=False) == b"\x00\x00\x00\x07"
    assert wire.response_header(7, flexible=True) == b"\x00\x00\x00\x07\x00"


def request_header(client_id: bytes | None, tags: bytes = b"") -> bytes:
    head = wire.REQUEST_HEADER.pack(3, 12, 99, -1 if client_id is None else len(client_id))
    return head + (client_id or b"") + tags


def test_a_v1_request_header_is_parsed() -> None:
    frame = request_header(b"rdkafka") + b"BODY"
    assert wire.parse_request_header(frame, flexible=False) == (3, 12, 99, "rdkafka", 17)


def test_a_v2_request_header_skips_its_tagged_fields() -> None:
    tags = wire.uvarint(2) + wire.uvarint(0) + wire.uvarint(3) + b"abc"
    tags += wire.uvarint(5) + wire.uvarint(0)
    frame = request_header(None, tags) + b"BODY"
    *fields, body_at = wire.parse_request_header(memoryview(frame), flexible=True)
    assert fields == [3, 12, 99, None]
    assert frame[body_at:] == b"BODY"


@pytest.mark.parametrize(
    ("frame", "flexible", "message"),
    [
        (b"\x00\x03\x00\x0c\x00\x00", False, "truncated"),
        (request_header(b"client")[:-1], False, "client id runs past"),
        (request_header(b"c", wire.uvarint(1) + wire.uvarint(0) + wire.uvarint(9) + b"x"),
         True, "tagged fields run past"),
        (request_header(b"c"), True, "truncated varint"),
    ],
    ids=["short header", "client id", "tagged field", "no tag count"],
)
def test_a_broken_request_header_is_malformed(frame: bytes, flexible: bool, message: str) -> None:
    with pytest.raises(MalformedRequest, match=message):
        wire.parse_request_header(frame, flexible)
