"""Kafka's RecordBatch v2 as a storage format: the header layout and the records inside.

A Kafka partition stores batches exactly as producers sent them (only the first 16
bytes, outside the CRC, are re-stamped), so reading a record back out of the log is
reading this format. What the wire needs besides (validation at produce, stamping,
recompression, transaction markers) stays in ``protocols/kafka/records.py``; this
module is what the log's record view and the broker's few look-inside paths share.
Layout (big-endian):

    0  baseOffset int64        21 attributes int16        45 producerId int64
    8  batchLength int32       23 lastOffsetDelta int32   53 producerEpoch int16
    12 partitionLeaderEpoch    27 baseTimestamp int64     55 baseSequence int32
    16 magic int8              35 maxTimestamp int64      57 recordsCount int32
    17 crc uint32 (CRC-32C of bytes 21..end)              61 records...

Stored bytes are not trusted: anything unreadable is ``UnreadableBatch``, raised at once
or part-way through a lazy iteration, never another exception.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from portask.broker.log import compression
from portask.broker.log.errors import UnreadableRecords

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
# batchLength counts the bytes after the length field itself.
LENGTH_OVERHEAD = 12

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_LOG_APPEND = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20
# The smallest record: length, attributes, timestamp delta, offset delta, key length,
# value length and header count, one byte each.
MIN_RECORD_SIZE = 7
# Zigzag varints here are int32 or int64: ten bytes at most. Bounding the loop keeps a
# run of continuation bytes from building an ever larger integer.
_VARINT_MAX_SHIFT = 63


class UnreadableBatch(UnreadableRecords):
    """Stored bytes that are not a readable magic-2 batch or record."""


class RawRecord(NamedTuple):
    offset_delta: int
    timestamp: int
    key: bytes | None
    is_tombstone: bool
    raw: memoryview  # the whole record, length prefix included


def is_control(payload: bytes | memoryview) -> bool:
    """A transaction marker, not data (consumers never see its record)."""
    return bool(HEADER.unpack_from(payload, 0)[5] & CONTROL)


def read_records(batch: bytes | memoryview, limit: int) -> tuple[int, Iterator[RawRecord]]:
    """The batch's codec and its records, decompressed within ``limit`` bytes.

    The records come lazily, so a reader that finds what it wants early stops there.
    """
    view = memoryview(batch)
    if len(view) < HEADER_SIZE:
        raise UnreadableBatch(f"record batch of {len(view)} bytes has no header")
    (_, length, _, _, _, attributes, _, base_ts, max_ts, _, _, _, count) = HEADER.unpack_from(
        view, 0
    )
    size = min(length + LENGTH_OVERHEAD, len(view))
    codec = attributes & COMPRESSION_MASK
    try:
        data = memoryview(compression.decompress(codec, view[HEADER_SIZE:size], limit))
    except compression.CodecError as exc:
        raise UnreadableBatch(f"records unreadable: {exc}") from None
    stamped = bool(attributes & TIMESTAMP_TYPE_LOG_APPEND)
    return codec, _walk(data, count, base_ts, max_ts if stamped else None)


def _walk(
    data: memoryview, count: int, base_ts: int, log_append_time: int | None
) -> Iterator[RawRecord]:
    total = len(data)
    pos = 0
    try:
        for i in range(count):
            start = pos
            length, pos = read_varint(data, pos)
            end = pos + length
            if length < MIN_RECORD_SIZE - 1 or end > total:
                raise UnreadableBatch(f"record {i} has length {length} with {total - pos} "
                                      "bytes left")
            pos += 1  # record attributes
            ts_delta, pos = read_varint(data, pos)
            offset_delta, pos = read_varint(data, pos)
            key_length, pos = read_varint(data, pos)
            if key_length < -1 or pos + max(key_length, 0) > end:
                raise UnreadableBatch(f"record {i} has key length {key_length}")
            key = None if key_length < 0 else bytes(data[pos : pos + key_length])
            pos += max(key_length, 0)
            value_length, pos = read_varint(data, pos)
            if pos > end:
                raise UnreadableBatch(f"record {i} runs past its length")
            timestamp = log_append_time if log_append_time is not None else base_ts + ts_delta
            yield RawRecord(offset_delta, timestamp, key, value_length < 0, data[start:end])
            pos = end
    except IndexError:
        raise UnreadableBatch("records end in the middle of a record") from None


def decode_records(
    batch: bytes | memoryview, limit: int
) -> list[tuple[int, int, bytes | None, memoryview | None, tuple[tuple[str, bytes | None], ...]]]:
    """(offset delta, timestamp, key, value, headers) of every record, in one walk: what
    the record view reads per record, with one- and two-byte varints (most lengths and
    deltas in a batch) read without a call."""
    data, count, base_ts, create_time = _records_data(batch, limit)
    total = len(data)
    out = []
    append = out.append
    pos = 0
    no_headers: tuple[tuple[str, bytes | None], ...] = ()
    try:
        for i in range(count):
            byte = data[pos]
            if byte < 0x80:
                length, pos = (byte >> 1) ^ -(byte & 1), pos + 1
            elif data[pos + 1] < 0x80:  # records of 64 bytes to 8 KiB
                raw = (byte & 0x7F) | data[pos + 1] << 7
                length, pos = (raw >> 1) ^ -(raw & 1), pos + 2
            else:
                length, pos = read_varint(data, pos)
            end = pos + length
            if length < MIN_RECORD_SIZE - 1 or end > total:
                raise UnreadableBatch(f"record {i} has length {length} with {total - pos} "
                                      "bytes left")
            byte = data[pos + 1]  # after the attributes
            if byte < 0x80:
                ts_delta, pos = (byte >> 1) ^ -(byte & 1), pos + 2
            else:
                ts_delta, pos = read_varint(data, pos + 1)
            byte = data[pos]
            if byte < 0x80:
                offset_delta, pos = (byte >> 1) ^ -(byte & 1), pos + 1
            elif data[pos + 1] < 0x80:  # deltas 64 to 8191
                raw = (byte & 0x7F) | data[pos + 1] << 7
                offset_delta, pos = (raw >> 1) ^ -(raw & 1), pos + 2
            else:
                offset_delta, pos = read_varint(data, pos)
            byte = data[pos]
            if byte < 0x80:
                key_length, pos = (byte >> 1) ^ -(byte & 1), pos + 1
            else:
                key_length, pos = read_varint(data, pos)
            if key_length < -1 or pos + key_length > end:
                raise UnreadableBatch(f"record {i} has key length {key_length}")
            key = None if key_length < 0 else bytes(data[pos : pos + key_length])
            pos += max(key_length, 0)
            byte = data[pos]
            if byte < 0x80:
                value_length, pos = (byte >> 1) ^ -(byte & 1), pos + 1
            elif data[pos + 1] < 0x80:  # values of 64 bytes to 8 KiB
                raw = (byte & 0x7F) | data[pos + 1] << 7
                value_length, pos = (raw >> 1) ^ -(raw & 1), pos + 2
            else:
                value_length, pos = read_varint(data, pos)
            if value_length < 0:
                value = None
            else:
                if pos + value_length > end:
                    raise UnreadableBatch(f"record {i} has value length {value_length}")
                value = data[pos : pos + value_length]
                pos += value_length
            # No headers (a zero count ending the record) is the common case; _headers
            # refuses a record whose fields ran past its length.
            headers = no_headers if data[pos] == 0 and pos + 1 == end else _headers(data, pos,
                                                                                    end)
            append((offset_delta, base_ts + ts_delta * create_time, key, value, headers))
            pos = end
    except IndexError:
        raise UnreadableBatch("records end in the middle of a record") from None
    return out


def _records_data(batch: bytes | memoryview, limit: int) -> tuple[memoryview, int, int, int]:
    """A batch's records decompressed, their count, the timestamp the records' deltas
    add to, and 1 for CreateTime (0 for LogAppendTime, whose records all have the
    batch's time whatever their deltas say)."""
    view = memoryview(batch)
    if len(view) < HEADER_SIZE:
        raise UnreadableBatch(f"record batch of {len(view)} bytes has no header")
    (_, length, _, _, _, attributes, _, base_ts, max_ts, _, _, _, count) = HEADER.unpack_from(
        view, 0)
    size = min(length + LENGTH_OVERHEAD, len(view))
    try:
        data = memoryview(compression.decompress(attributes & COMPRESSION_MASK,
                                                 view[HEADER_SIZE:size], limit))
    except compression.CodecError as exc:
        raise UnreadableBatch(f"records unreadable: {exc}") from None
    if attributes & TIMESTAMP_TYPE_LOG_APPEND:
        return data, count, max_ts, 0
    return data, count, base_ts, 1


def _headers(data: memoryview, pos: int, end: int) -> tuple[tuple[str, bytes | None], ...]:
    try:
        count, pos = read_varint(data, pos)
        if pos > end or count < 0 or count > end - pos:
            raise UnreadableBatch(f"record has {count} headers in {end - pos} bytes")
        headers = []
        for _ in range(count):
            name_length, pos = read_varint(data, pos)
            if name_length < 0 or pos + name_length > end:
                raise UnreadableBatch(f"record header name length {name_length}")
            name = str(data[pos : pos + name_length], "utf-8")
            pos += name_length
            header_length, pos = read_varint(data, pos)
            if pos + max(header_length, 0) > end:
                raise UnreadableBatch(f"record header value length {header_length}")
            headers.append((name, None if header_length < 0
                            else bytes(data[pos : pos + header_length])))
            pos += max(header_length, 0)
    except (IndexError, UnicodeDecodeError) as exc:
        raise UnreadableBatch(f"record unreadable: {exc}") from None
    return tuple(headers)


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Zigzag varint, as the record format encodes lengths, deltas and sizes."""
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > _VARINT_MAX_SHIFT:
            raise UnreadableBatch(f"varint longer than 10 bytes at {pos}")
