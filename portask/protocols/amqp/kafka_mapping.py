"""Kafka records as AMQP messages and back: the mapping table in the README, in code.

Kafka -> AMQP (a topic read as a stream queue): the key becomes the routing key, with
an ``x-kafka-key`` longstr header whenever the routing key cannot carry it exactly
(binary, longer than 255 bytes, or empty); a null key is an empty routing key and no
header. The value is the body; a tombstone (null value) is an empty body with
``x-kafka-tombstone: true``. Record headers become AMQP headers (values as longstr, a
null value as void), the timestamp becomes the ``timestamp`` property (seconds) and
``x-kafka-timestamp`` (exact milliseconds). Record headers named ``amqp.<property>``
become that basic property again, and ``amqp.type.<header>`` restores a header's AMQP
field type, so an AMQP message written to a topic reads back as it was published.

AMQP -> Kafka (a publish routed to a topic's stream queue): the reverse. The key is
``x-kafka-key`` if present, else the routing key, except through the default exchange,
whose routing key names the queue, not a key (the record then has a null key).

The property bytes are encoded here by hand: pamqp cannot write a bytes header value as
longstr, and this runs once per record delivered.
"""

from __future__ import annotations

import datetime
import decimal
import struct
import time
from typing import Any

from portask.broker.amqp.message_store import Message
from portask.broker.log.record_log import Record
from portask.protocols.amqp import frames

KEY_HEADER = "x-kafka-key"
TOMBSTONE_HEADER = "x-kafka-tombstone"
TIMESTAMP_HEADER = "x-kafka-timestamp"
PROPERTY_PREFIX = "amqp."
TYPE_PREFIX = "amqp.type."
PARTITION_HEADER = "x-kafka-partition"
_RESERVED = (KEY_HEADER, TOMBSTONE_HEADER, TIMESTAMP_HEADER, PARTITION_HEADER,
             "x-stream-offset")
# A delivered record is persistent, as every message in a stream is.
_PERSISTENT = 2

# The basic properties in wire order: (flag, name as the README and RabbitMQ spell it,
# whether it is an octet (else a shortstr)). Headers and timestamp are written apart.
_CONTENT_TYPE, _CONTENT_ENCODING, _HEADERS = 0x8000, 0x4000, 0x2000
_DELIVERY_MODE, _PRIORITY = 0x1000, 0x0800
_TIMESTAMP = 0x0040
_BEFORE_HEADERS = ((_CONTENT_TYPE, "content_type"), (_CONTENT_ENCODING, "content_encoding"))
_AFTER_HEADERS = (
    (_DELIVERY_MODE, "delivery_mode"), (_PRIORITY, "priority"),
    (0x0400, "correlation_id"), (0x0200, "reply_to"), (0x0100, "expiration"),
    (0x0080, "message_id"), (_TIMESTAMP, "timestamp"), (0x0020, "type"),
    (0x0010, "user_id"), (0x0008, "app_id"),
)
_OCTETS = ("delivery_mode", "priority")
PROPERTY_NAMES = tuple(name for _f, name in _BEFORE_HEADERS + _AFTER_HEADERS
                       if name != "timestamp")
# pamqp's attribute names where they differ from the property's.
_PAMQP_NAMES = {"message_type": "type"}

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_OFFSET_ENTRY = b"\x0fx-stream-offsetl"
_TIMESTAMP_ENTRY = b"\x11x-kafka-timestampl"
_PARTITION_ENTRY = b"\x11x-kafka-partitionl"
# Flags, headers table (x-stream-offset, x-kafka-timestamp), delivery mode, timestamp:
# a record with a text key, a value and no headers.
_PLAIN = struct.Struct(f">HI{len(_OFFSET_ENTRY)}sq{len(_TIMESTAMP_ENTRY)}sqBQ")
_PLAIN_FLAGS = _HEADERS | _DELIVERY_MODE | _TIMESTAMP
_PLAIN_TABLE = len(_OFFSET_ENTRY) + 8 + len(_TIMESTAMP_ENTRY) + 8


# -- Kafka -> AMQP ------------------------------------------------------------------------


class KafkaRecordMessages:
    """``broker.amqp.queues.RecordMessages``: a topic's record as a stream delivery."""

    def message(self, record: Record, topic: str, partition: int | None = None) -> Message:
        key = record.key
        value = record.value
        if (partition is None and not record.headers and value is not None
                and key is not None and 0 < len(key) <= 255):
            # The common record (a text key, a value, no headers): its property bytes in
            # one pack. The same bytes as _properties writes for it.
            try:
                routing_key = key.decode()
            except UnicodeDecodeError:
                pass
            else:
                timestamp = record.timestamp
                return Message("", routing_key, _PLAIN.pack(
                    _PLAIN_FLAGS, _PLAIN_TABLE, _OFFSET_ENTRY, record.offset, _TIMESTAMP_ENTRY,
                    timestamp, _PERSISTENT, max(timestamp, 0) // 1000), value, persistent=True)
        return self._message(record, partition)

    def _message(self, record: Record, partition: int | None = None) -> Message:
        entries: list[bytes] = []
        properties: dict[str, Any] = {}
        key = record.key
        routing_key = ""
        if key is not None:
            text = _text(key)
            if text is not None and 0 < len(key) <= 255:
                routing_key = text
            else:
                entries.append(_entry(KEY_HEADER, b"S" + _U32.pack(len(key)) + key))
        value = record.value
        if value is None:
            entries.append(_entry(TOMBSTONE_HEADER, b"t\x01"))
        # Written here rather than by the channel (the queue's delivers_offsets is off):
        # one headers table built once instead of a second splice per delivery.
        entries.append(_OFFSET_ENTRY + _I64.pack(record.offset))
        entries.append(_TIMESTAMP_ENTRY + _I64.pack(record.timestamp))
        if partition is not None:
            entries.append(_PARTITION_ENTRY + _I64.pack(partition))
        types = {name[len(TYPE_PREFIX):]: raw for name, raw in record.headers
                 if name.startswith(TYPE_PREFIX) and raw is not None}
        for name, raw in record.headers:
            if name in _RESERVED:
                continue  # this mapping's own headers are the ones written above
            if name.startswith(PROPERTY_PREFIX):
                prop = name[len(PROPERTY_PREFIX):]
                if prop in PROPERTY_NAMES and raw is not None:
                    properties[prop] = raw
                    continue
                if name.startswith(TYPE_PREFIX):
                    continue
            entries.append(_entry(name, _typed_value(raw, types.get(name))))
        priority = _octet(properties.get("priority"))
        expiration = _text(properties["expiration"]) if "expiration" in properties else None
        props = _properties(properties, entries, max(record.timestamp, 0) // 1000)
        return Message("", routing_key, props, b"" if value is None else value,
                       persistent=True, priority=priority or 0,
                       expiration=int(expiration) if expiration and expiration.isdigit()
                       else None)


def _properties(values: dict[str, bytes], headers: list[bytes], timestamp_s: int) -> bytes:
    flags = _HEADERS | _TIMESTAMP
    out: list[bytes] = []
    for flag, name in _BEFORE_HEADERS:
        raw = values.get(name)
        if raw is not None and len(raw) <= 255:
            flags |= flag
            out.append(bytes((len(raw),)) + raw)
    table = b"".join(headers)
    out.append(_U32.pack(len(table)) + table)
    for flag, name in _AFTER_HEADERS:
        if flag == _TIMESTAMP:
            out.append(_U64.pack(timestamp_s))
            continue
        raw = values.get(name)
        if name == "delivery_mode":
            octet = _octet(raw)
            flags |= flag
            out.append(bytes((_PERSISTENT if octet is None else octet,)))
        elif name in _OCTETS:
            octet = _octet(raw)
            if octet is not None:
                flags |= flag
                out.append(bytes((octet,)))
        elif raw is not None and len(raw) <= 255:
            flags |= flag
            out.append(bytes((len(raw),)) + raw)
    return struct.pack(">H", flags) + b"".join(out)


def _entry(name: str, value: bytes) -> bytes:
    raw = name.encode()[:255]
    return bytes((len(raw),)) + raw + value


def _typed_value(raw: bytes | None, kind: bytes | None) -> bytes:
    """A header value as a field: longstr, unless ``amqp.type.<name>`` restores the
    scalar type it had when an AMQP client published it."""
    if raw is None:
        return b"V"
    text = _text(raw) if kind else None
    try:
        if text is not None:
            if kind == b"t":
                return b"t" + (b"\x01" if text == "true" else b"\x00")
            if kind == b"l":
                return b"l" + _I64.pack(int(text))
            if kind == b"d":
                return b"d" + _F64.pack(float(text))
            if kind == b"T":
                return b"T" + _U64.pack(int(text))
            if kind == b"x":
                return b"x" + _U32.pack(len(raw)) + raw
    except (ValueError, struct.error, OverflowError):
        pass  # a header someone else wrote: delivered as the text it holds
    return b"S" + _U32.pack(len(raw)) + raw


def _text(raw: bytes | memoryview) -> str | None:
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError:
        return None


def _octet(raw: bytes | None) -> int | None:
    text = _text(raw) if raw is not None else None
    if text is None or not text.isdigit() or int(text) > 255:
        return None
    return int(text)


# -- AMQP -> Kafka ------------------------------------------------------------------------


class RecordRefused(ValueError):
    """A message that cannot be a Kafka record (its properties do not decode)."""


# What a message's property bytes say about its record: (key from x-kafka-key, or
# _NO_KEY_HEADER; whether it is a tombstone; its timestamp in ms, or None for "now";
# its headers). Publishers mostly send the same properties message after message.
_NO_KEY_HEADER = object()
_FromProperties = tuple[object, bool, int | None, list[tuple[str, bytes | None]]]


class _LastProperties:
    """The last property bytes decoded and what they gave: a one-entry cache, so a run
    of publishes with equal properties decodes them once. Nothing returned from it is
    mutated (the headers list is read-only to the record encoder)."""

    __slots__ = ("decoded", "raw")

    def __init__(self) -> None:
        self.raw = b""
        self.decoded: _FromProperties | None = None

    def get(self, properties: bytes | memoryview) -> _FromProperties:
        raw = bytes(properties)
        if raw == self.raw and self.decoded is not None:
            return self.decoded
        decoded = _from_properties(raw)
        self.raw, self.decoded = raw, decoded
        return decoded


_LAST = _LastProperties()


def to_record(message: Message) -> tuple[bytes | None, bytes | None,
                                         list[tuple[str, bytes | None]], int]:
    """(key, value, headers, timestamp ms) of the record a published message becomes."""
    key_header, tombstone, timestamp, headers = _LAST.get(message.properties)
    key: bytes | None
    if key_header is not _NO_KEY_HEADER:
        key = key_header  # type: ignore[assignment]
    elif message.exchange:
        key = message.routing_key.encode()
    else:
        key = None
    value = None if tombstone else bytes(message.body)
    if timestamp is None:
        timestamp = int(time.time() * 1000)
    return key, value, headers, timestamp


def _from_properties(properties: bytes) -> _FromProperties:
    try:
        values = frames.decode_properties(properties)
    except frames.FrameSyntaxError as exc:
        raise RecordRefused(str(exc)) from None
    table: dict[str, Any] = values.pop("headers", None) or {}
    key = _raw(table[KEY_HEADER]) if KEY_HEADER in table else _NO_KEY_HEADER
    tombstone = table.get(TOMBSTONE_HEADER) is True
    stamp = table.get(TIMESTAMP_HEADER)
    sent = values.pop("timestamp", None)
    timestamp: int | None = None
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        timestamp = stamp
    elif isinstance(sent, datetime.datetime):
        timestamp = int(sent.timestamp() * 1000)
    headers: list[tuple[str, bytes | None]] = []
    for name, value_ in values.items():
        prop = _PAMQP_NAMES.get(name, name)
        if value_ is not None and prop in PROPERTY_NAMES:
            headers.append((PROPERTY_PREFIX + prop, str(value_).encode()))
    for name, field in table.items():
        if name in _RESERVED:
            continue
        raw, kind = _header(field)
        headers.append((name, raw))
        if kind is not None:
            headers.append((TYPE_PREFIX + name, kind))
    return key, tombstone, timestamp, headers


def _raw(field: Any) -> bytes | None:
    if field is None:
        return None
    if isinstance(field, bytes | bytearray):
        return bytes(field)
    return str(field).encode()


def _header(field: Any) -> tuple[bytes | None, bytes | None]:
    """A header's Kafka value, and its AMQP type tag when longstr would not give it back."""
    if field is None:
        return None, None
    if isinstance(field, str):
        return field.encode(), None
    if isinstance(field, bytearray):  # the 'x' byte-array field type
        return bytes(field), b"x"
    if isinstance(field, bytes):
        return field, None
    if isinstance(field, bool):
        return (b"true" if field else b"false"), b"t"
    if isinstance(field, int):
        return str(field).encode(), b"l"
    if isinstance(field, float):
        return repr(field).encode(), b"d"
    if isinstance(field, datetime.datetime):
        return str(int(field.timestamp())).encode(), b"T"
    if isinstance(field, decimal.Decimal):
        return str(field).encode(), None
    # Tables and arrays: their text, not their structure (documented as such).
    return str(field).encode(), None
