"""Frame codecs: pure functions of bytes, no I/O.

The hot path is hand-written: Basic.Publish and the content header are parsed with
struct and slicing, and Basic.Deliver / GetOk / Return plus the content header and
body frames are built from pre-packed pieces, carrying the publisher's property bytes
through untouched. Everything else goes through pamqp, which is plenty fast for methods
a client sends a handful of times per connection.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import commands, decode
from pamqp import frame as pamqp_frame
from pamqp.base import Frame as PamqpMethod

from portask.protocols.amqp.constants import (
    BASIC_ACK,
    BASIC_DELIVER,
    BASIC_GET_OK,
    BASIC_NACK,
    BASIC_RETURN,
    CLASS_BASIC,
    FRAME_BODY,
    FRAME_END,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
)

FRAME_HEAD = struct.Struct(">BHI")
_METHOD_ID = struct.Struct(">HH")
_CONTENT_HEADER = struct.Struct(">HHQ")
_DELIVER_TAIL = struct.Struct(">QB")
_ACK = struct.Struct(">BHIHHQB")
_END = bytes([FRAME_END])
_DELIVER_ID = _METHOD_ID.pack(CLASS_BASIC, BASIC_DELIVER)
_GET_OK_ID = _METHOD_ID.pack(CLASS_BASIC, BASIC_GET_OK)
_RETURN_ID = _METHOD_ID.pack(CLASS_BASIC, BASIC_RETURN)
_NACK_ID = _METHOD_ID.pack(CLASS_BASIC, BASIC_NACK)

HEARTBEAT_FRAME = FRAME_HEAD.pack(FRAME_HEARTBEAT, 0, 0) + _END

_shortstr_cache: dict[str, bytes] = {}


class FrameSyntaxError(ValueError):
    """A frame's payload does not decode; the connection answers 502 SYNTAX_ERROR."""


def shortstr(value: str) -> bytes:
    """Length-prefixed short string; cached because exchange names and keys repeat."""
    cached = _shortstr_cache.get(value)
    if cached is None:
        raw = value.encode()
        if len(raw) > 255:
            raise ValueError("short string longer than 255 bytes")
        cached = bytes((len(raw),)) + raw
        if len(_shortstr_cache) > 10_000:
            _shortstr_cache.clear()
        _shortstr_cache[value] = cached
    return cached


def method_frame(channel: int, method: PamqpMethod) -> bytes:
    return pamqp_frame.marshal(method, channel)


def decode_method(payload: bytes) -> PamqpMethod:
    """A method frame payload to a pamqp method object (the cold path)."""
    if len(payload) < 4:
        raise FrameSyntaxError("method frame shorter than its class and method ids")
    index = struct.unpack_from(">I", payload)[0]
    cls = commands.INDEX_MAPPING.get(index)
    if cls is None:
        raise LookupError(f"unknown method {index >> 16}.{index & 0xFFFF}")
    method = cls()
    try:
        method.unmarshal(payload[4:])
    except (struct.error, ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise FrameSyntaxError(f"malformed {cls.name}: {e}") from None
    return method


def parse_publish(payload: bytes) -> tuple[str, str, bool, bool]:
    """Basic.Publish args: (exchange, routing key, mandatory, immediate)."""
    try:
        pos = 6  # class, method, reserved-1
        n = payload[pos]
        exchange = payload[pos + 1 : pos + 1 + n].decode()
        pos += 1 + n
        n = payload[pos]
        routing_key = payload[pos + 1 : pos + 1 + n].decode()
        pos += 1 + n
        bits = payload[pos]
    except (IndexError, UnicodeDecodeError) as e:
        raise FrameSyntaxError(f"malformed Basic.Publish: {e}") from None
    return exchange, routing_key, bool(bits & 1), bool(bits & 2)


def parse_ack(payload: bytes) -> tuple[int, bool]:
    """Basic.Ack args: (delivery tag, multiple)."""
    if len(payload) < 13:
        raise FrameSyntaxError("malformed Basic.Ack")
    tag, bits = _DELIVER_TAIL.unpack_from(payload, 4)
    return tag, bool(bits & 1)


def parse_content_header(payload: bytes) -> tuple[int, int, bytes]:
    """(class id, body size, raw property flags and values)."""
    if len(payload) < 14:
        raise FrameSyntaxError("content header shorter than its fixed fields")
    class_id, _weight, body_size = _CONTENT_HEADER.unpack_from(payload)
    return class_id, body_size, payload[12:]


# Basic property flag bits, in wire order.
_P_CONTENT_TYPE = 0x8000
_P_CONTENT_ENCODING = 0x4000
_P_HEADERS = 0x2000
_P_DELIVERY_MODE = 0x1000
_P_PRIORITY = 0x0800
_P_CORRELATION_ID = 0x0400
_P_REPLY_TO = 0x0200
_P_EXPIRATION = 0x0100
_U32 = struct.Struct(">I")
_LONG_FIELD = struct.Struct(">cq")


def _headers_position(properties: bytes | memoryview, flags: int, pos: int = 2) -> int:
    """Where the headers table starts (or would): after the content-type and
    content-encoding short strings, the two properties that precede it."""
    if flags & _P_CONTENT_TYPE:
        pos += 1 + properties[pos]
    if flags & _P_CONTENT_ENCODING:
        pos += 1 + properties[pos]
    return pos


def basic_fields(properties: bytes | memoryview) -> tuple[int, int, str | None]:
    """(delivery_mode, priority, expiration) from raw basic properties, without decoding
    the rest: queues act on these three, and this runs once per publish."""
    if len(properties) < 2:
        return 0, 0, None
    flags = (properties[0] << 8) | properties[1]
    if not flags & (_P_DELIVERY_MODE | _P_PRIORITY | _P_EXPIRATION):
        return 0, 0, None
    try:
        pos = _headers_position(properties, flags)
        if flags & _P_HEADERS:
            pos += 4 + _U32.unpack_from(properties, pos)[0]
        delivery_mode = priority = 0
        if flags & _P_DELIVERY_MODE:
            delivery_mode = properties[pos]
            pos += 1
        if flags & _P_PRIORITY:
            priority = properties[pos]
            pos += 1
        expiration = None
        if flags & _P_EXPIRATION:
            if flags & _P_CORRELATION_ID:
                pos += 1 + properties[pos]
            if flags & _P_REPLY_TO:
                pos += 1 + properties[pos]
            size = properties[pos]
            if pos + 1 + size > len(properties):
                raise IndexError("expiration runs past the properties")
            expiration = bytes(properties[pos + 1:pos + 1 + size]).decode()
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise FrameSyntaxError(f"malformed basic properties: {e}") from None
    return delivery_mode, priority, expiration


def add_long_header(properties: bytes | memoryview, name: str, value: int) -> bytes:
    """Raw properties with one long-int header appended (x-stream-offset on stream
    deliveries): the headers table is extended in place, nothing else is re-encoded."""
    entry = shortstr(name) + _LONG_FIELD.pack(b"l", value)
    flags = (properties[0] << 8) | properties[1]
    pos = _headers_position(properties, flags)
    if flags & _P_HEADERS:
        size = _U32.unpack_from(properties, pos)[0]
        end = pos + 4 + size
        return b"".join((properties[:pos], _U32.pack(size + len(entry)),
                         properties[pos + 4:end], entry, properties[end:]))
    return b"".join((struct.pack(">H", flags | _P_HEADERS), properties[2:pos],
                     _U32.pack(len(entry)), entry, properties[pos:]))


def headers_from_properties(properties: bytes | memoryview) -> dict[str, Any] | None:
    """The `headers` table of raw basic properties, decoded only for headers routing."""
    if len(properties) < 2:
        return None
    flags = (properties[0] << 8) | properties[1]
    if not flags & _P_HEADERS:
        return None
    pos = 2
    while flags & 1:  # continuation flag words; basic has none, but skip them politely
        flags = (properties[pos] << 8) | properties[pos + 1]
        pos += 2
    try:
        pos = _headers_position(properties, flags, pos)
        _used, table = decode.field_table(bytes(properties[pos:]))
    except (IndexError, ValueError, struct.error, UnicodeDecodeError):
        return None
    return dict(table)


def content_frames(
    channel: int, method_payload: bytes, properties: bytes | memoryview,
    body: bytes | memoryview, frame_max: int,
) -> list[bytes | memoryview]:
    """Method frame + content header + body frames split at frame_max, as write pieces."""
    head = FRAME_HEAD.pack(FRAME_METHOD, channel, len(method_payload))
    header_payload_len = 12 + len(properties)
    size = len(body)
    parts: list[bytes | memoryview] = [
        head, method_payload, _END,
        FRAME_HEAD.pack(FRAME_HEADER, channel, header_payload_len),
        _CONTENT_HEADER.pack(CLASS_BASIC, 0, size), properties, _END,
    ]
    if not size:
        return parts
    chunk = frame_max - 8
    if size <= chunk:
        parts += (FRAME_HEAD.pack(FRAME_BODY, channel, size), body, _END)
        return parts
    view = memoryview(body)
    for start in range(0, size, chunk):
        piece = view[start : start + chunk]
        parts += (FRAME_HEAD.pack(FRAME_BODY, channel, len(piece)), piece, _END)
    return parts


def deliver_payload(
    consumer_tag: bytes, delivery_tag: int, redelivered: bool, exchange: str, routing_key: str
) -> bytes:
    """Basic.Deliver arguments; consumer_tag is already a shortstr."""
    return b"".join((
        _DELIVER_ID, consumer_tag, _DELIVER_TAIL.pack(delivery_tag, redelivered),
        shortstr(exchange), shortstr(routing_key),
    ))


def get_ok_payload(
    delivery_tag: int, redelivered: bool, exchange: str, routing_key: str, message_count: int
) -> bytes:
    return b"".join((
        _GET_OK_ID, _DELIVER_TAIL.pack(delivery_tag, redelivered),
        shortstr(exchange), shortstr(routing_key), struct.pack(">I", message_count),
    ))


def return_payload(reply_code: int, reply_text: str, exchange: str, routing_key: str) -> bytes:
    return b"".join((
        _RETURN_ID, struct.pack(">H", reply_code),
        shortstr(reply_text), shortstr(exchange), shortstr(routing_key),
    ))


def confirm_frame(channel: int, delivery_tag: int, multiple: bool, ack: bool = True) -> bytes:
    """Basic.Ack (or Basic.Nack, which adds a requeue bit of 0) to a publisher."""
    if ack:
        return _ACK.pack(FRAME_METHOD, channel, 13, CLASS_BASIC, BASIC_ACK, delivery_tag,
                         multiple) + _END
    return (FRAME_HEAD.pack(FRAME_METHOD, channel, 13)
            + _NACK_ID + _DELIVER_TAIL.pack(delivery_tag, multiple) + _END)


