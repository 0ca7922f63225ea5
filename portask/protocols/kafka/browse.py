"""Kafka's formats for readers and writers other than Kafka clients (the HTTP API and
the web console): ``broker.kafka.record_codec.RecordCodec`` implemented here, where
the wire formats live, and installed on ``Topics.codec`` by the composition root.

Nothing here is on the produce or fetch path. Stored bytes are not trusted: a batch
whose records cannot be read is reported as such (``BatchRecords.error``), never
raised past this module.
"""

from __future__ import annotations

import struct
import time

import crc32c

from portask import metrics
from portask.broker.kafka.record_codec import (
    CREATE_TIME,
    LOG_APPEND_TIME,
    BatchRecords,
    Record,
    RecordRefused,
)
from portask.broker.kafka.topics import Partition
from portask.broker.log import compression
from portask.protocols.kafka import records

_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
# The consumer protocol's name for members that use ConsumerProtocol{Subscription,Assignment}.
CONSUMER_PROTOCOL = "consumer"


class KafkaRecordCodec:
    def __init__(self, uncompressed_limit: int) -> None:
        self.limit = uncompressed_limit
        self._round_robin = 0

    # -- reading --------------------------------------------------------------------

    def batch_records(self, offset: int, payload: memoryview) -> BatchRecords:
        if len(payload) < records.HEADER_SIZE:
            return BatchRecords(offset, offset + 1, [], "batch shorter than its header")
        head = records.HEADER.unpack_from(payload, 0)
        attributes, last_delta, max_ts = head[5], head[6], head[8]
        next_offset = offset + max(last_delta, 0) + 1
        if attributes & records.CONTROL:
            return BatchRecords(offset, next_offset, [])
        stamped = bool(attributes & records.TIMESTAMP_TYPE_LOG_APPEND)
        kind = LOG_APPEND_TIME if stamped else CREATE_TIME
        out: list[Record] = []
        try:
            for record in records.records_of(payload, self.limit):
                key, value, headers = _fields(record.raw)
                timestamp = max_ts if stamped else record.timestamp
                out.append(Record(offset + record.offset_delta, timestamp, kind, key, value,
                                  headers))
        except records.InvalidBatch as exc:
            return BatchRecords(offset, next_offset, out, str(exc))
        return BatchRecords(offset, next_offset, out)

    # -- writing ------------------------------------------------------------------------

    def append(self, partition: Partition, key: bytes | None, value: bytes | None,
               headers: list[tuple[str, bytes | None]], timestamp_ms: int) -> int:
        record = encode_record(key, value, headers)
        self.check(partition, key, len(record))
        return self.append_records(partition, [(record, timestamp_ms)])

    def encode_record(self, key: bytes | None, value: bytes | None,
                      headers: list[tuple[str, bytes | None]]) -> bytes:
        return encode_record(key, value, headers)

    def check(self, partition: Partition, key: bytes | None, size: int) -> None:
        configs = partition.topic.effective
        if key is None and "compact" in configs["cleanup.policy"]:
            raise RecordRefused("key", "a compacted topic takes only records with a key")
        batch = records.HEADER_SIZE + size
        limit = int(configs["max.message.bytes"])
        if batch > limit:
            raise RecordRefused("value", f"the record's batch is {batch} bytes; the "
                                f"topic's max.message.bytes is {limit}")

    def append_records(self, partition: Partition, encoded: list[tuple[bytes, int]]) -> int:
        configs = partition.topic.effective
        limit = int(configs["max.message.bytes"])
        wanted = configs["compression.type"]
        log_append = configs["message.timestamp.type"] == LOG_APPEND_TIME
        first = -1
        start = 0
        total = len(encoded)
        while start < total:
            # As many records as fit one batch of max.message.bytes (each alone fits:
            # ``check`` refused the others at publish).
            end = start + 1
            size = records.HEADER_SIZE + len(encoded[start][0])
            while end < total and size + len(encoded[end][0]) <= limit:
                size += len(encoded[end][0])
                end += 1
            batch = build_records_batch(encoded[start:end])
            if wanted not in ("producer", "uncompressed"):
                info = records.parse_batches(batch)[0]
                batch = records.recompress(batch, info, compression.NAMES[wanted], self.limit)
            records.stamp(batch, partition.high_watermark)
            newest = max(timestamp for _fields, timestamp in encoded[start:end])
            if log_append:
                newest = int(time.time() * 1000)
                records.set_log_append_time(batch, newest)
            offset = partition.append(batch, end - start, newest)
            if first < 0:
                first = offset
            metrics.MESSAGES_PRODUCED.labels("kafka", partition.topic.name, "").inc(end - start)
            metrics.BYTES_PRODUCED.labels("kafka", partition.topic.name, "").inc(len(batch))
            start = end
        return first

    def partition_for(self, key: bytes | None, partitions: int) -> int:
        if key is None:
            # Keyless records spread over the partitions, as the clients' sticky
            # partitioners do over time.
            self._round_robin += 1
            return self._round_robin % partitions
        return (murmur2(key) & 0x7FFFFFFF) % partitions

    # -- consumer groups ----------------------------------------------------------------

    def assignment(self, protocol_type: str | None, data: bytes) -> list[tuple[str, list[int]]]:
        """ConsumerProtocolAssignment (v0-v3 start alike): version int16, then
        [topic string, [partition int32]], then user data."""
        if protocol_type != CONSUMER_PROTOCOL or len(data) < 6:
            return []
        reader = _Reader(data, 2)
        try:
            out = []
            for _ in range(reader.count(6)):
                topic = reader.string()
                out.append((topic, [reader.int32() for _ in range(reader.count(4))]))
            return out
        except (ValueError, struct.error, UnicodeDecodeError):
            return []

    def subscription(self, protocol_type: str | None, data: bytes) -> list[str]:
        """ConsumerProtocolSubscription: version int16, then [topic string], then more."""
        if protocol_type != CONSUMER_PROTOCOL or len(data) < 6:
            return []
        reader = _Reader(data, 2)
        try:
            return [reader.string() for _ in range(reader.count(2))]
        except (ValueError, struct.error, UnicodeDecodeError):
            return []


class _Reader:
    """Big-endian fields of a consumer-protocol blob, every count checked against what
    is left before anything is allocated for it."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def count(self, min_item: int) -> int:
        n = self.int32()
        if n < 0 or n * min_item > len(self.data) - self.pos:
            raise ValueError("count past the end")
        return n

    def int32(self) -> int:
        value = int(_INT32.unpack_from(self.data, self.pos)[0])
        self.pos += 4
        return value

    def string(self) -> str:
        length = int(_INT16.unpack_from(self.data, self.pos)[0])
        start = self.pos + 2
        if length < 0 or start + length > len(self.data):
            raise ValueError("string past the end")
        self.pos = start + length
        return self.data[start:self.pos].decode()


def _fields(raw: memoryview) -> tuple[bytes | None, bytes | None,
                                       list[tuple[str, bytes | None]]]:
    """Key, value and headers of one record (``raw`` starts at its length varint and
    ends with it, as ``records.records_of`` checked)."""
    read = records.read_varint
    end = len(raw)
    try:
        _, pos = read(raw, 0)
        pos += 1  # attributes
        _, pos = read(raw, pos)  # timestamp delta
        _, pos = read(raw, pos)  # offset delta
        key, pos = _bytes(raw, pos, end)
        value, pos = _bytes(raw, pos, end)
        count, pos = read(raw, pos)
        if count < 0 or count * 2 > end - pos:
            raise records.InvalidBatch(f"record has {count} headers", records.CORRUPT_MESSAGE)
        headers = []
        for _ in range(count):
            name, pos = _bytes(raw, pos, end)
            data, pos = _bytes(raw, pos, end)
            headers.append(((name or b"").decode(errors="replace"), data))
    except IndexError:
        raise records.InvalidBatch("record ends early", records.CORRUPT_MESSAGE) from None
    return key, value, headers


def _bytes(raw: memoryview, pos: int, end: int) -> tuple[bytes | None, int]:
    length, pos = records.read_varint(raw, pos)
    if length < 0:
        return None, pos
    if pos + length > end:
        raise records.InvalidBatch("record field runs past the record", records.CORRUPT_MESSAGE)
    return bytes(raw[pos:pos + length]), pos + length


# Zigzag varints of -1 .. 8191, the lengths and deltas of nearly every record an AMQP
# publish writes: a table look-up instead of three calls each (per record, twice or more).
# Built from the zigzag values (-1 -> 1, n >= 0 -> 2n; one byte below 128, two above)
# rather than by 8,193 calls of records.varint: 0.8 ms instead of 2 ms of start-up.
_SMALL_VARINTS: tuple[bytes, ...] = (
    b"\x01",
    *[bytes((z,)) for z in range(0, 128, 2)],
    *[bytes(((z & 0x7F) | 0x80, z >> 7)) for z in range(128, 16384, 2)],
)


def _varint(value: int) -> bytes:
    if -1 <= value < 8192:
        return _SMALL_VARINTS[value + 1]
    return records.varint(value)


def _sized(data: bytes | None) -> bytes:
    if data is None:
        return _SMALL_VARINTS[0]
    return _varint(len(data)) + data


def encode_record(key: bytes | None, value: bytes | None,
                  headers: list[tuple[str, bytes | None]]) -> bytes:
    """One record's bytes after its length, deltas and attributes (which depend on its
    place in a batch): key, value and headers."""
    if not headers:
        return b"".join((_sized(key), _sized(value), _SMALL_VARINTS[1]))
    parts = [_sized(key), _sized(value), _varint(len(headers))]
    for name, data in headers:
        parts.append(_sized(name.encode()))
        parts.append(_sized(data))
    return b"".join(parts)


def build_records_batch(encoded: list[tuple[bytes, int]]) -> bytearray:
    """Records (``encode_record`` bytes, timestamp ms) in one uncompressed magic-2 batch,
    without a producer id: what an AMQP publish or the HTTP API writes."""
    base_ts = encoded[0][1]
    max_ts = base_ts
    varint = _varint
    body = bytearray()
    for delta, (fields, timestamp) in enumerate(encoded):
        if timestamp > max_ts:
            max_ts = timestamp
        # attributes 0, then the timestamp and offset deltas, then key, value, headers.
        head = b"\x00" + varint(timestamp - base_ts) + varint(delta)
        body += varint(len(head) + len(fields))
        body += head
        body += fields
    batch = bytearray(records.HEADER.pack(
        0, records.HEADER_SIZE - records.LENGTH_OVERHEAD + len(body), 0, 2, 0, 0,
        len(encoded) - 1, base_ts, max_ts, records.NO_PRODUCER_ID, -1, -1, len(encoded)))
    batch += body
    _UINT32.pack_into(batch, 17, crc32c.crc32c(memoryview(batch)[21:]))
    return batch


def build_batch(key: bytes | None, value: bytes | None,
                headers: list[tuple[str, bytes | None]], timestamp_ms: int) -> bytearray:
    """One record in an uncompressed magic-2 batch, without a producer id."""
    return build_records_batch([(encode_record(key, value, headers), timestamp_ms)])


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``Utils.murmur2``), as its Java, librdkafka-compatible and Python
    clients hash keys to partitions; returns the unsigned 32-bit hash."""
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length & ~3
    extra = length % 4
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h
