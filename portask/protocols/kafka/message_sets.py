"""Legacy message sets (magic 0 and 1): what Produce v0-2 carry and Fetch v0-3 expect.

The log stores magic-2 record batches only. A message set that arrives in Produce v0-2
is converted once into one uncompressed record batch (``to_record_batch``), which then
takes the ordinary produce path (size, CRC-32C, the topic's compression.type, ...); a
Fetch v0-3 answer is converted from the stored batches (``from_record_batches``), as
Kafka down-converts for old fetchers: control batches are dropped, compressed batches
are decompressed, offsets are kept and headers, which these formats cannot carry, are
lost. Neither conversion runs for newer versions.

Layout (big-endian), one entry of a message set:

    0  offset int64               (magic 0/1 wrapper: see below)
    8  message size int32         (the bytes after this field)
    12 crc uint32                 CRC-32 (zlib's) of bytes 16..end
    16 magic int8                 0 or 1
    17 attributes int8            bits 0-2 codec (0 none, 1 gzip, 2 snappy, 3 lz4);
                                  bit 3 LogAppendTime (magic 1)
    18 timestamp int64            magic 1 only
    .. key bytes (int32 length, -1 null), value bytes (int32 length, -1 null)

A compressed message is a wrapper whose value is the codec's encoding of an inner
message set. Inner offsets are absolute (magic 0) or relative to the first (magic 1,
the wrapper carrying the last one); the broker assigns its own offsets either way, as
Kafka does. LZ4 wrappers written by magic-0 producers carry the frame header checksum
Kafka 0.8/0.9 computed wrongly; compression.py does not check frame checksums, so
they are read like any other frame (Kafka tolerates them the same way).

Everything is bounded by the bytes received: sizes and lengths are checked against
what is left before a slice is taken, and a wrapper decompresses within ``limit``
(``kafka.max_uncompressed_batch_bytes``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

import crc32c

from portask.broker.log import compression
from portask.protocols.kafka import records

_ENTRY = struct.Struct(">qiIbb")  # offset, size, crc, magic, attributes
_ENTRY_SIZE = _ENTRY.size  # 18
_LOG_OVERHEAD = 12  # offset and size, outside the message's own size
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")
_CRC_AT = 12
_MAGIC_AT = 16
_TIMESTAMP_TYPE_LOG_APPEND = 0x08
_CODEC_MASK = 0x07
# crc + magic + attributes + key length + value length, then the timestamp for magic 1
_MIN_MESSAGE_SIZE = {0: 14, 1: 22}
NO_TIMESTAMP = -1

CORRUPT_MESSAGE = records.CORRUPT_MESSAGE
MESSAGE_TOO_LARGE = records.MESSAGE_TOO_LARGE
UNSUPPORTED_COMPRESSION_TYPE = 76


class InvalidMessageSet(ValueError):
    """The bytes are not a valid legacy message set; ``code`` is the Kafka error to answer."""

    def __init__(self, message: str, code: int = CORRUPT_MESSAGE) -> None:
        super().__init__(message)
        self.code = code


# (timestamp or -1, key, value) of one message, in the order they arrived.
Message = tuple[int, bytes | None, bytes | None]


def to_record_batch(data: bytes | memoryview, limit: int) -> bytes:
    """The messages of a Produce v0-2 message set as one uncompressed magic-2 batch.

    Raises InvalidMessageSet (CORRUPT_MESSAGE for bad framing or CRC,
    MESSAGE_TOO_LARGE past ``limit``, UNSUPPORTED_COMPRESSION_TYPE for zstd).
    """
    messages = read_messages(data, limit)
    if not messages:
        raise InvalidMessageSet("the message set holds no message")
    return build_record_batch(messages)


def read_messages(data: bytes | memoryview, limit: int) -> list[Message]:
    """Every message of a message set, wrappers decompressed (one level, as Kafka allows)."""
    out: list[Message] = []
    budget = [limit]
    _read(memoryview(data), out, budget, inner=False)
    return out


def _read(view: memoryview, out: list[Message], budget: list[int], inner: bool) -> None:
    total = len(view)
    pos = 0
    while pos < total:
        if total - pos < _ENTRY_SIZE:
            raise InvalidMessageSet(
                f"message set truncated: {total - pos} bytes at position {pos}"
            )
        _, size, crc, magic, attributes = _ENTRY.unpack_from(view, pos)
        minimum = _MIN_MESSAGE_SIZE.get(magic)
        if minimum is None:
            raise InvalidMessageSet(f"message magic {magic} at position {pos} is not 0 or 1")
        end = pos + _LOG_OVERHEAD + size
        if size < minimum or end > total:
            raise InvalidMessageSet(
                f"message size {size} at position {pos} does not fit the "
                f"{total - pos - _LOG_OVERHEAD} bytes left"
            )
        if zlib.crc32(view[pos + _MAGIC_AT : end]) != crc:
            raise InvalidMessageSet(f"message CRC-32 mismatch at position {pos}")
        at = pos + _MAGIC_AT + 2
        timestamp = NO_TIMESTAMP
        if magic == 1:
            timestamp = _INT64.unpack_from(view, at)[0]
            at += 8
        key, at = _bytes(view, at, end, "key")
        value, at = _bytes(view, at, end, "value")
        if at != end:
            raise InvalidMessageSet(f"message at position {pos} has {end - at} bytes left over")
        codec = attributes & _CODEC_MASK
        if codec == compression.NONE:
            budget[0] -= size
            if budget[0] < 0:
                raise InvalidMessageSet("message set exceeds the uncompressed limit",
                                        MESSAGE_TOO_LARGE)
            out.append((timestamp, key, value))
        elif inner:
            raise InvalidMessageSet("a compressed message inside a compressed message")
        else:
            first = len(out)
            _unwrap(codec, value, pos, out, budget)
            if magic == 1 and attributes & _TIMESTAMP_TYPE_LOG_APPEND:
                # The wrapper's time stands for every inner message's.
                out[first:] = [(timestamp, k, v) for _, k, v in out[first:]]
        pos = end


def _unwrap(
    codec: int, value: bytes | None, pos: int, out: list[Message], budget: list[int]
) -> None:
    """The messages inside a compressed wrapper, decompressed within what is left of the
    budget."""
    if codec not in (compression.GZIP, compression.SNAPPY, compression.LZ4):
        raise InvalidMessageSet(
            f"compression codec {codec} is not allowed before magic 2",
            UNSUPPORTED_COMPRESSION_TYPE,
        )
    if value is None:
        raise InvalidMessageSet(f"compressed message at position {pos} has no value")
    try:
        raw = compression.decompress(codec, value, budget[0])
    except compression.LimitExceeded as exc:
        raise InvalidMessageSet(str(exc), MESSAGE_TOO_LARGE) from None
    except compression.CodecError as exc:
        raise InvalidMessageSet(f"wrapper message does not decompress: {exc}") from None
    _read(memoryview(raw), out, budget, inner=True)


def _bytes(view: memoryview, at: int, end: int, what: str) -> tuple[bytes | None, int]:
    if at + 4 > end:
        raise InvalidMessageSet(f"message {what} length runs past the message")
    length = _INT32.unpack_from(view, at)[0]
    at += 4
    if length < 0:
        if length != -1:
            raise InvalidMessageSet(f"message {what} has a negative length ({length})")
        return None, at
    if at + length > end:
        raise InvalidMessageSet(f"message {what} of {length} bytes runs past the message")
    return bytes(view[at : at + length]), at + length


def _varint(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def build_record_batch(messages: list[Message]) -> bytes:
    """An uncompressed magic-2 batch at base offset 0 holding ``messages`` in order.

    Magic-0 messages have no timestamp: the batch carries -1, as Kafka's up-conversion
    writes it. No producer id: these producers are never idempotent.
    """
    stamps = [t for t, _, _ in messages]
    first = stamps[0]
    max_ts = max(stamps)
    body = bytearray()
    for delta, (timestamp, key, value) in enumerate(messages):
        record = bytearray(b"\x00")  # attributes
        record += _varint(timestamp - first if timestamp >= 0 and first >= 0 else 0)
        record += _varint(delta)
        record += _varint(-1) if key is None else _varint(len(key)) + key
        record += _varint(-1) if value is None else _varint(len(value)) + value
        record += b"\x00"  # no headers
        body += _varint(len(record)) + record
    count = len(messages)
    header = records.HEADER.pack(
        0, records.HEADER_SIZE - records.LENGTH_OVERHEAD + len(body), -1, 2, 0, 0,
        count - 1, first, max_ts, -1, -1, -1, count,
    )
    batch = bytearray(header) + body
    struct.pack_into(">I", batch, 17, crc32c.crc32c(memoryview(batch)[21:]))
    return bytes(batch)


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise InvalidMessageSet(f"varint longer than 10 bytes at {pos}")


def batch_messages(
    batch: memoryview, limit: int
) -> list[tuple[int, int, bool, bytes | None, bytes | None]]:
    """(offset, timestamp, is LogAppendTime, key, value) of each data record of a stored
    magic-2 batch; [] for a control batch. Raises InvalidMessageSet if unreadable."""
    if len(batch) < records.HEADER_SIZE:
        raise InvalidMessageSet("stored record batch has no header")
    (base, length, _, magic, _, attributes, _, base_ts, max_ts, _, _, _, count) = (
        records.HEADER.unpack_from(batch, 0)
    )
    if magic != 2:
        raise InvalidMessageSet(f"stored record batch has magic {magic}")
    if attributes & records.CONTROL:
        return []
    size = min(length + records.LENGTH_OVERHEAD, len(batch))
    try:
        data = memoryview(
            compression.decompress(
                attributes & records.COMPRESSION_MASK, batch[records.HEADER_SIZE : size], limit
            )
        )
    except compression.CodecError as exc:
        raise InvalidMessageSet(f"stored records unreadable: {exc}") from None
    log_append = bool(attributes & records.TIMESTAMP_TYPE_LOG_APPEND)
    out = []
    total = len(data)
    pos = 0
    try:
        for _ in range(count):
            length, pos = _read_varint(data, pos)
            end = pos + length
            if length < records.MIN_RECORD_SIZE - 1 or end > total:
                raise InvalidMessageSet("stored record runs past its batch")
            pos += 1  # attributes
            ts_delta, pos = _read_varint(data, pos)
            offset_delta, pos = _read_varint(data, pos)
            key_length, pos = _read_varint(data, pos)
            if key_length < -1 or pos + max(key_length, 0) > end:
                raise InvalidMessageSet("stored record key runs past the record")
            key = None if key_length < 0 else bytes(data[pos : pos + key_length])
            pos += max(key_length, 0)
            value_length, pos = _read_varint(data, pos)
            if value_length < -1 or pos + max(value_length, 0) > end:
                raise InvalidMessageSet("stored record value runs past the record")
            value = None if value_length < 0 else bytes(data[pos : pos + value_length])
            timestamp = max_ts if log_append else base_ts + ts_delta
            out.append((base + offset_delta, timestamp, log_append, key, value))
            pos = end  # headers: dropped, magic 0/1 cannot carry them
    except IndexError:
        raise InvalidMessageSet("stored records end in the middle of a record") from None
    return out


def encode_message(
    offset: int, magic: int, timestamp: int, log_append: bool, key: bytes | None,
    value: bytes | None,
) -> bytes:
    """One message set entry (uncompressed) in the given magic."""
    attributes = _TIMESTAMP_TYPE_LOG_APPEND if magic == 1 and log_append else 0
    body = bytearray(struct.pack(">bb", magic, attributes))
    if magic == 1:
        body += _INT64.pack(timestamp)
    body += _INT32.pack(-1) if key is None else _INT32.pack(len(key)) + key
    body += _INT32.pack(-1) if value is None else _INT32.pack(len(value)) + value
    return (
        _INT64.pack(offset) + _INT32.pack(len(body) + 4)
        + struct.pack(">I", zlib.crc32(body)) + bytes(body)
    )


def from_record_batches(
    batches: Iterable[memoryview], fetch_offset: int, magic: int, max_bytes: int, limit: int
) -> bytes:
    """A Fetch v0-3 answer's message set from stored batches, in ``magic`` (0 for Fetch
    v0-1, 1 for v2-3): records before ``fetch_offset`` are left out, and messages stop
    before ``max_bytes`` except the first, which is always whole. A batch that cannot be
    read ends the set there (raises InvalidMessageSet only if nothing came before it)."""
    out: list[bytes] = []
    size = 0
    for batch in batches:
        try:
            found = batch_messages(batch, limit)
        except InvalidMessageSet:
            if out:
                break
            raise
        for offset, timestamp, log_append, key, value in found:
            if offset < fetch_offset:
                continue
            entry = encode_message(offset, magic, timestamp, log_append, key, value)
            if out and size + len(entry) > max_bytes:
                return b"".join(out)
            out.append(entry)
            size += len(entry)
    return b"".join(out)
