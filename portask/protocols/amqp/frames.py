"""Frame codecs: pure functions of bytes, no I/O.

The hot path is hand-written: Basic.Publish and the content header are parsed with
struct and slicing, and Basic.Deliver / GetOk / Return plus the content header and
body frames are built from pre-packed pieces, carrying the publisher's property bytes
through untouched. Other methods are decoded strictly into pamqp's method objects by
``decode_method`` (field readers in ``fields``) and encoded by ``encode_method`` from
pamqp's argument tables; pamqp's own codec is too lenient on input and too strict on
names for a server.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import commands, encode
from pamqp.base import Frame as PamqpMethod

from portask.protocols.amqp import fields
from portask.protocols.amqp.constants import (
    BASIC_ACK,
    BASIC_DELIVER,
    BASIC_GET_OK,
    BASIC_NACK,
    BASIC_RETURN,
    CLASS_BASIC,
    CLASS_QUEUE,
    FRAME_BODY,
    FRAME_END,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    QUEUE_DECLARE_OK,
)

FRAME_HEAD = struct.Struct(">BHI")
_METHOD_ID = struct.Struct(">HH")
_CONTENT_HEADER = struct.Struct(">HHQ")
CONTENT_HEADER = _CONTENT_HEADER  # class id, weight, body size
CONTENT_HEADER_MIN = _CONTENT_HEADER.size  # class, weight, body size; then the properties
_DELIVER_TAIL = struct.Struct(">QB")
_COUNTS = struct.Struct(">II")
_ACK = struct.Struct(">BHIHHQB")
_END = bytes([FRAME_END])
_DELIVER_ID = _METHOD_ID.pack(CLASS_BASIC, BASIC_DELIVER)
_GET_OK_ID = _METHOD_ID.pack(CLASS_BASIC, BASIC_GET_OK)
_RETURN_ID = _METHOD_ID.pack(CLASS_BASIC, BASIC_RETURN)
_NACK_ID = _METHOD_ID.pack(CLASS_BASIC, BASIC_NACK)

HEARTBEAT_FRAME = FRAME_HEAD.pack(FRAME_HEARTBEAT, 0, 0) + _END

_shortstr_cache: dict[str, bytes] = {}


class FrameSyntaxError(ValueError):
    """A frame's payload does not decode. ``utf8``: it failed on a short string that is
    not UTF-8, which RabbitMQ reports differently from other undecodable arguments."""

    def __init__(self, text: str, utf8: bool = False) -> None:
        super().__init__(text)
        self.utf8 = utf8


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
    """A method frame the server sends. Encoded here rather than by pamqp's ``marshal``,
    whose validation refuses names RabbitMQ accepts (``café``, ``a!b``): any UTF-8 short
    string is a valid queue or exchange name."""
    payload = encode_method(method)
    return b"".join((FRAME_HEAD.pack(FRAME_METHOD, channel, len(payload)), payload, _END))


def queue_declare_ok_frame(channel: int, queue: str, message_count: int,
                           consumer_count: int) -> bytes:
    """Queue.DeclareOk, built here because pamqp's constructor refuses names outside
    ``[a-zA-Z0-9-_.:@#,/+ ]``."""
    payload = b"".join((_METHOD_ID.pack(CLASS_QUEUE, QUEUE_DECLARE_OK), shortstr(queue),
                        _COUNTS.pack(message_count, consumer_count)))
    return b"".join((FRAME_HEAD.pack(FRAME_METHOD, channel, len(payload)), payload, _END))


def encode_method(method: PamqpMethod) -> bytes:
    parts = [_U32.pack(method.index)]
    bits = nbits = 0
    for name, kind in _arguments(type(method)):
        value = getattr(method, name)
        if kind == "bit":
            if nbits == 8:
                parts.append(bytes((bits,)))
                bits = nbits = 0
            bits |= bool(value) << nbits
            nbits += 1
            continue
        if nbits:
            parts.append(bytes((bits,)))
            bits = nbits = 0
        if kind == "shortstr":
            parts.append(shortstr(value or ""))
        else:
            parts.append(encode.by_type(value, kind))
    if nbits:
        parts.append(bytes((bits,)))
    return b"".join(parts)


_ARGUMENTS: dict[type, tuple[tuple[str, str], ...]] = {}


def _arguments(cls: type) -> tuple[tuple[str, str], ...]:
    """(name, AMQP type) of a method's arguments in wire order, from pamqp's tables."""
    found = _ARGUMENTS.get(cls)
    if found is None:
        found = _ARGUMENTS[cls] = tuple(
            (name, cls.amqp_type(name)) for name in cls.__slots__  # type: ignore[attr-defined]
        )
    return found


def decode_method(payload: bytes | memoryview) -> PamqpMethod:
    """A method frame payload to a pamqp method object (the cold path), read strictly:
    every argument must fit, short strings must be UTF-8, tables must decode exactly and
    nothing may follow the last argument (RabbitMQ's generated decoder matches the whole
    payload the same way). Raises FrameSyntaxError, or LookupError for an unknown method."""
    end = len(payload)
    if end < 4:
        raise FrameSyntaxError("method frame shorter than its class and method ids")
    index = _U32.unpack_from(payload)[0]
    cls = commands.INDEX_MAPPING.get(index)
    if cls is None:
        raise LookupError(f"unknown method {index >> 16}.{index & 0xFFFF}")
    method = cls()
    pos = 4
    bits = nbits = 0
    name = ""
    try:
        for name, kind in _arguments(cls):
            if kind == "bit":
                if nbits in (0, 8):
                    bits, pos = fields.octet(payload, pos, end)
                    nbits = 0
                setattr(method, name, bool(bits & (1 << nbits)))
                nbits += 1
                continue
            nbits = 0
            value, pos = fields.ARGUMENTS[kind](payload, pos, end)
            setattr(method, name, value)
    except fields.FieldError as e:
        raise FrameSyntaxError(f"malformed {_spec_name(cls)} argument '{name}': {e}",
                               utf8=isinstance(e, fields.MalformedUtf8)) from None
    if pos != end:
        raise FrameSyntaxError(f"malformed {_spec_name(cls)}: {end - pos} bytes after the "
                               f"last argument")
    return method


def _spec_name(cls: type) -> str:
    """'Queue.Declare' as the spec and RabbitMQ's texts write it: 'queue.declare'."""
    klass, _, method = cls.name.partition(".")  # type: ignore[attr-defined]
    words = "".join("_" + c.lower() if c.isupper() else c for c in method).lstrip("_")
    return f"{klass.lower()}.{words}"


def parse_publish(payload: bytes) -> tuple[str, str, bool, bool]:
    """Basic.Publish args: (exchange, routing key, mandatory, immediate). The layout is
    fixed (class, method, reserved short, shortstr, shortstr, bits) and must fill the
    payload exactly; inlined because it runs once per publish."""
    try:
        pos = 7 + payload[6]
        exchange = payload[7:pos].decode()
        start = pos + 1
        pos = start + payload[pos]
        routing_key = payload[start:pos].decode()
        bits = payload[pos]
    except IndexError as e:
        raise FrameSyntaxError(f"malformed basic.publish: {e}") from None
    except UnicodeDecodeError as e:
        raise FrameSyntaxError(f"malformed basic.publish: {e}", utf8=True) from None
    if pos + 1 != len(payload):
        raise FrameSyntaxError(f"malformed basic.publish: {len(payload) - pos - 1} bytes "
                               "after the last argument")
    return exchange, routing_key, bool(bits & 1), bool(bits & 2)


def parse_ack(payload: bytes | memoryview) -> tuple[int, bool]:
    """Basic.Ack args: (delivery tag, multiple)."""
    if len(payload) != 13:
        raise FrameSyntaxError(f"malformed basic.ack: {len(payload)} bytes, expected 13")
    tag, bits = _DELIVER_TAIL.unpack_from(payload, 4)
    return tag, bool(bits & 1)


def parse_content_header(payload: bytes) -> tuple[int, int, int, bytes]:
    """(class id, weight, body size, raw property flags and values)."""
    if len(payload) < CONTENT_HEADER_MIN:
        raise FrameSyntaxError("content header shorter than its fixed fields")
    class_id, weight, body_size = _CONTENT_HEADER.unpack_from(payload)
    return class_id, weight, body_size, payload[12:]


# Basic property flag bits, in wire order.
_P_CONTENT_TYPE = 0x8000
_P_CONTENT_ENCODING = 0x4000
_P_HEADERS = 0x2000
_P_DELIVERY_MODE = 0x1000
_P_PRIORITY = 0x0800
_P_CORRELATION_ID = 0x0400
_P_REPLY_TO = 0x0200
_P_EXPIRATION = 0x0100
_P_MESSAGE_ID = 0x0080
_P_TIMESTAMP = 0x0040
_P_TYPE = 0x0020
_P_USER_ID = 0x0010
_P_APP_ID = 0x0008
_P_CLUSTER_ID = 0x0004
_P_AFTER_EXPIRATION = 0x00FC
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
    the rest: queues act on these three, and this runs once per publish.

    It also walks the lengths of every property present, so that properties whose
    lengths lie are refused here (502) instead of breaking a consumer or a later
    dead-lettering; the headers table is checked as one length-prefixed block (its
    contents are decoded only where needed, and leniently). Flag bits 0 and 1 are
    ignored, as RabbitMQ does."""
    n = len(properties)
    if n < 2:
        raise FrameSyntaxError("content header without property flags")
    flags = (properties[0] << 8) | properties[1]
    if flags == _P_DELIVERY_MODE and n == 3:  # the most common case: persistent or not
        return properties[2], 0, None
    pos = 2
    delivery_mode = priority = 0
    expiration = None
    try:
        if flags & (_P_CONTENT_TYPE | _P_CONTENT_ENCODING):
            pos = _headers_position(properties, flags)
        if flags & _P_HEADERS:
            pos += 4 + _U32.unpack_from(properties, pos)[0]
        if flags & _P_DELIVERY_MODE:
            delivery_mode = properties[pos]
            pos += 1
        if flags & _P_PRIORITY:
            priority = properties[pos]
            pos += 1
        if flags & _P_CORRELATION_ID:
            pos += 1 + properties[pos]
        if flags & _P_REPLY_TO:
            pos += 1 + properties[pos]
        if flags & _P_EXPIRATION:  # a short read here is caught by the length check below
            start = pos + 1
            pos = start + properties[pos]
            expiration = bytes(properties[start:pos]).decode()
        if flags & _P_AFTER_EXPIRATION:
            pos = _after_expiration(properties, flags, pos)
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise FrameSyntaxError(f"malformed basic properties: {e}") from None
    if pos != n:
        raise FrameSyntaxError(f"malformed basic properties: their lengths add up to {pos} "
                               f"bytes of {n}")
    return delivery_mode, priority, expiration


def _after_expiration(properties: bytes | memoryview, flags: int, pos: int) -> int:
    """Skip message-id, timestamp, type, user-id, app-id and cluster-id."""
    for bit in (_P_MESSAGE_ID, _P_TIMESTAMP, _P_TYPE, _P_USER_ID, _P_APP_ID, _P_CLUSTER_ID):
        if flags & bit:
            pos += 8 if bit == _P_TIMESTAMP else 1 + properties[pos]
    return pos


# Wire order of the basic properties: (flag, pamqp attribute name, reader).
_PROPERTIES: tuple[tuple[int, str, fields.Reader], ...] = (
    (_P_CONTENT_TYPE, "content_type", fields.shortstr),
    (_P_CONTENT_ENCODING, "content_encoding", fields.shortstr),
    (_P_HEADERS, "headers", fields.table),
    (_P_DELIVERY_MODE, "delivery_mode", fields.octet),
    (_P_PRIORITY, "priority", fields.octet),
    (_P_CORRELATION_ID, "correlation_id", fields.shortstr),
    (_P_REPLY_TO, "reply_to", fields.shortstr),
    (_P_EXPIRATION, "expiration", fields.shortstr),
    (_P_MESSAGE_ID, "message_id", fields.shortstr),
    (_P_TIMESTAMP, "timestamp", fields.timestamp),
    (_P_TYPE, "message_type", fields.shortstr),
    (_P_USER_ID, "user_id", fields.shortstr),
    (_P_APP_ID, "app_id", fields.shortstr),
    (_P_CLUSTER_ID, "cluster_id", fields.shortstr),
)


def decode_properties(properties: bytes | memoryview) -> dict[str, Any]:
    """Every basic property present, by pamqp's attribute names, read strictly (raises
    FrameSyntaxError). Only the paths that must change properties come here."""
    end = len(properties)
    if end < 2:
        return {}
    flags = (properties[0] << 8) | properties[1]
    pos = 2
    out: dict[str, Any] = {}
    try:
        for flag, name, read in _PROPERTIES:
            if flags & flag:
                out[name], pos = read(properties, pos, end)
    except fields.FieldError as e:
        raise FrameSyntaxError(f"malformed basic properties: {e}") from None
    if pos != end:
        raise FrameSyntaxError(f"malformed basic properties: {end - pos} bytes after "
                               "the last property")
    return out


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
    """The `headers` table of raw basic properties, decoded only for headers routing;
    None when absent or undecodable (the message then routes as if it had none)."""
    if len(properties) < 2:
        return None
    flags = (properties[0] << 8) | properties[1]
    if not flags & _P_HEADERS:
        return None
    pos = 2
    try:
        pos = _headers_position(properties, flags, pos)
        table, _end = fields.table(properties, pos, len(properties))
    except (IndexError, fields.FieldError):
        return None
    return table


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


# A delivery's frames after the consumer tag: delivery tag, redelivered, the exchange
# and routing key (one "{n}s" field), the method frame's end, then the content header
# frame's head and fixed fields.
DeliverHead = tuple[bytes, bytes, struct.Struct]
_BODY_HEAD = struct.Struct(">BBHI")  # the previous frame's end, then a body frame's head
_BODY_TYPE = struct.Struct(">BBH")  # the previous frame's end, a body frame's type, channel
# The method frame's end, then a content header up to its body size.
_HEADER_HEAD = struct.Struct(">BBHIHH")


def deliver_head(channel: int, consumer_tag: bytes, exchange: str,
                 routing_key: str) -> DeliverHead:
    """What every Basic.Deliver to one consumer of one exchange and routing key shares:
    the method frame up to the consumer tag, the two names, and a Struct that packs the
    rest of the method and the content header's fixed fields in one call. Consumers
    keep these (``deliver_frames`` is per message)."""
    names = shortstr(exchange) + shortstr(routing_key)
    size = len(_DELIVER_ID) + len(consumer_tag) + _DELIVER_TAIL.size + len(names)
    prefix = FRAME_HEAD.pack(FRAME_METHOD, channel, size) + _DELIVER_ID + consumer_tag
    return prefix, names, struct.Struct(f">QB{len(names)}sBBHIHHQ")


# A delivery whose body fits one frame: (pack, method prefix, names and the content
# header's fixed fields, the body frame's type and channel). See deliver_packer.
DeliverPacker = tuple[Any, bytes, bytes, bytes]


def deliver_packer(channel: int, consumer_tag: bytes, exchange: str, routing_key: str,
                   properties_size: int) -> DeliverPacker:
    """What every delivery to one consumer of one exchange and routing key with property
    bytes of one length shares, when its body fits one frame: a Struct's pack that
    writes everything up to the body in one call (Basic.Deliver, the content header
    with its properties, the body frame's head), given the constant pieces returned
    with it. Call it as ``pack(prefix, delivery_tag, redelivered, middle, body_size,
    properties, body_head, body_size)``; the body and a frame end follow."""
    prefix, names, _rest = deliver_head(channel, consumer_tag, exchange, routing_key)
    middle = names + _HEADER_HEAD.pack(FRAME_END, FRAME_HEADER, channel,
                                       12 + properties_size, CLASS_BASIC, 0)
    body_head = _BODY_TYPE.pack(FRAME_END, FRAME_BODY, channel)
    layout = struct.Struct(
        f">{len(prefix)}sQB{len(middle)}sQ{properties_size}s{len(body_head)}sI")
    return layout.pack, prefix, middle, body_head


def deliver_frames(head: DeliverHead, channel: int, delivery_tag: int, redelivered: bool,
                   properties: bytes | memoryview, body: bytes | memoryview,
                   frame_max: int) -> list[bytes | memoryview]:
    """Basic.Deliver + content header + body frames (split at frame_max) as write
    pieces: six for a body that fits one frame, from two struct packs."""
    prefix, names, rest = head
    size = len(body)
    parts: list[bytes | memoryview] = [
        prefix,
        rest.pack(delivery_tag, redelivered, names, FRAME_END, FRAME_HEADER, channel,
                  12 + len(properties), CLASS_BASIC, 0, size),
        properties,
    ]
    chunk = frame_max - 8
    if 0 < size <= chunk:
        parts += (_BODY_HEAD.pack(FRAME_END, FRAME_BODY, channel, size), body, _END)
        return parts
    parts.append(_END)
    if size:
        view = memoryview(body)
        for start in range(0, size, chunk):
            piece = view[start : start + chunk]
            parts += (FRAME_HEAD.pack(FRAME_BODY, channel, len(piece)), piece, _END)
    return parts


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


