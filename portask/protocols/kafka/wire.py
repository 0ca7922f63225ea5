"""Kafka primitive encoders and the request/response headers.

Used by the hand-written hot responses (Produce, Fetch) and by the server's framing.
Everything returns bytes ready to join; nothing here knows about any one API.
"""

from __future__ import annotations

import struct
import uuid

INT8 = struct.Struct(">b")
INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
INT64 = struct.Struct(">q")
UINT32 = struct.Struct(">I")
# Fixed part of every request header: api key, api version, correlation id, client id length.
REQUEST_HEADER = struct.Struct(">hhih")
EMPTY_TAGS = b"\x00"
NULL_UUID = bytes(16)


class MalformedRequest(ValueError):
    """The request bytes cannot be decoded; the connection is closed, as Kafka does."""


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_uvarint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise MalformedRequest("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise MalformedRequest("varint longer than 64 bits")


def string(value: str, flexible: bool) -> bytes:
    raw = value.encode()
    return (uvarint(len(raw) + 1) if flexible else INT16.pack(len(raw))) + raw


def nullable_string(value: str | None, flexible: bool) -> bytes:
    if value is None:
        return b"\x00" if flexible else INT16.pack(-1)
    return string(value, flexible)


def array_length(count: int, flexible: bool) -> bytes:
    return uvarint(count + 1) if flexible else INT32.pack(count)


def bytes_length(size: int, flexible: bool) -> bytes:
    return uvarint(size + 1) if flexible else INT32.pack(size)


def uuid_bytes(value: uuid.UUID | None) -> bytes:
    return NULL_UUID if value is None else value.bytes


def response_header(correlation_id: int, flexible: bool) -> bytes:
    # Response header v1 adds an (empty) tagged-field section to v0.
    return INT32.pack(correlation_id) + EMPTY_TAGS if flexible else INT32.pack(correlation_id)


def parse_request_header(
    frame: bytes | memoryview, flexible: bool
) -> tuple[int, int, int, str | None, int]:
    """(api_key, api_version, correlation_id, client_id, body offset) of a request frame."""
    if len(frame) < REQUEST_HEADER.size:
        raise MalformedRequest(f"request header truncated: {len(frame)} bytes")
    api_key, version, correlation_id, client_len = REQUEST_HEADER.unpack_from(frame, 0)
    pos = REQUEST_HEADER.size
    client_id = None
    if client_len >= 0:
        if pos + client_len > len(frame):
            raise MalformedRequest("client id runs past the end of the request")
        client_id = bytes(frame[pos : pos + client_len]).decode("utf-8", "replace")
        pos += client_len
    if flexible:
        pos = skip_tagged_fields(frame, pos)
    return api_key, version, correlation_id, client_id, pos


def skip_tagged_fields(data: bytes | memoryview, pos: int) -> int:
    count, pos = read_uvarint(data, pos)
    for _ in range(count):
        _, pos = read_uvarint(data, pos)
        size, pos = read_uvarint(data, pos)
        pos += size
    if pos > len(data):
        raise MalformedRequest("tagged fields run past the end of the request")
    return pos
