"""RecordBatch (magic 2) framing: just enough to validate, count and re-stamp a batch.

The broker never decodes individual records on the produce/fetch path: a batch is
stored as the producer sent it, with only the fields outside the CRC rewritten (base
offset, partition leader epoch) and, for LogAppendTime topics, the max timestamp and
the CRC. Produce checks per batch that the records can be there (``check_records``:
compressed records decompress, and the bytes can hold the count the header claims).
The few readers that look inside (ListOffsets by timestamp, compaction, recompression)
get InvalidBatch for records they cannot read, never another exception. Layout
(big-endian):

    0  baseOffset int64        21 attributes int16        45 producerId int64
    8  batchLength int32       23 lastOffsetDelta int32   53 producerEpoch int16
    12 partitionLeaderEpoch    27 baseTimestamp int64     55 baseSequence int32
    16 magic int8              35 maxTimestamp int64      57 recordsCount int32
    17 crc uint32 (CRC-32C of bytes 21..end)              61 records...
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import crc32c

from portask.broker.log import compression
from portask.broker.log.kafka_batch import (
    COMPRESSION_MASK,
    CONTROL,
    HEADER,
    HEADER_SIZE,
    LENGTH_OVERHEAD,
    MIN_RECORD_SIZE,
    TIMESTAMP_TYPE_LOG_APPEND,
    TRANSACTIONAL,
    RawRecord,
    UnreadableBatch,
    read_records,
)
from portask.broker.log.kafka_batch import read_varint as _read_varint
from portask.protocols.kafka.wire import uvarint

_BASE_OFFSET = struct.Struct(">q")
# baseOffset, batchLength, partitionLeaderEpoch: the head of a batch up to the magic byte.
_STAMP = struct.Struct(">qii")
STAMP_SIZE = _STAMP.size
_LEADER_EPOCH_AT = 12
_CRC_AT = 17
_ATTRIBUTES_AT = 21
_MAX_TIMESTAMP_AT = 35
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT64 = struct.Struct(">q")

NO_PRODUCER_ID = -1


class InvalidBatch(ValueError):
    """The bytes are not a valid magic-2 record batch; ``code`` is the Kafka error to answer."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


CORRUPT_MESSAGE = 2
MESSAGE_TOO_LARGE = 10
INVALID_RECORD = 87
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What the broker needs from a batch header; the records themselves stay opaque."""

    start: int  # position of the batch in the produce payload
    size: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def offset_count(self) -> int:
        return self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL)


def parse_batches(data: bytes | memoryview) -> list[BatchInfo]:
    """Split a produce payload into batches, checking sizes, magic and CRC-32C of each."""
    view = memoryview(data)
    total = len(view)
    batches = []
    pos = 0
    while pos < total:
        if total - pos < HEADER_SIZE:
            raise InvalidBatch(
                f"record batch truncated: {total - pos} bytes at position {pos}, "
                f"a batch header is {HEADER_SIZE}",
                CORRUPT_MESSAGE,
            )
        (
            _,
            length,
            _,
            magic,
            crc,
            attributes,
            last_delta,
            base_ts,
            max_ts,
            pid,
            epoch,
            base_seq,
            count,
        ) = HEADER.unpack_from(view, pos)
        size = length + LENGTH_OVERHEAD
        if magic != 2:
            raise InvalidBatch(
                f"record batch magic {magic} is not supported; only magic 2 (Kafka 0.11+)",
                UNSUPPORTED_FOR_MESSAGE_FORMAT,
            )
        if size < HEADER_SIZE or pos + size > total:
            raise InvalidBatch(
                f"record batch length {length} does not fit the {total - pos} bytes sent",
                CORRUPT_MESSAGE,
            )
        if crc32c.crc32c(view[pos + _ATTRIBUTES_AT : pos + size]) != crc:
            raise InvalidBatch("record batch CRC-32C mismatch", CORRUPT_MESSAGE)
        if count < 0 or last_delta < 0 or (count == 0 and not attributes & CONTROL):
            raise InvalidBatch(
                f"record batch has {count} records and last offset delta {last_delta}",
                INVALID_RECORD,
            )
        batches.append(
            BatchInfo(
                pos, size, attributes, last_delta, base_ts, max_ts, pid, epoch, base_seq, count
            )
        )
        pos += size
    return batches


def check_records(batch: bytes | memoryview, info: BatchInfo, limit: int) -> None:
    """What produce checks inside a batch beyond its header and CRC, once per batch.

    As Kafka's LogValidator, compressed records must decompress (to at most ``limit``
    bytes, else MESSAGE_TOO_LARGE); unlike it, the records are not walked one by one,
    which would cost Python time per record: the uncompressed bytes need only be able
    to hold ``records_count`` records. Raises InvalidBatch.
    """
    body = memoryview(batch)[HEADER_SIZE : info.size]
    codec = info.compression
    try:
        size = compression.uncompressed_size(codec, body, limit)
    except compression.LimitExceeded as exc:
        raise InvalidBatch(str(exc), MESSAGE_TOO_LARGE) from None
    except compression.CodecError as exc:
        raise InvalidBatch(f"record batch says {compression.name(codec)}: {exc}",
                           CORRUPT_MESSAGE) from None
    if size < info.records_count * MIN_RECORD_SIZE:
        raise InvalidBatch(
            f"record batch claims {info.records_count} records in {size} bytes of records",
            CORRUPT_MESSAGE,
        )


def stamp(batch: bytearray, base_offset: int, leader_epoch: int = 0) -> None:
    """Write the offset the log assigned; both fields sit outside the CRC."""
    _BASE_OFFSET.pack_into(batch, 0, base_offset)
    _INT32.pack_into(batch, _LEADER_EPOCH_AT, leader_epoch)


def stamped_prefix(batch: bytes | memoryview, base_offset: int, leader_epoch: int = 0) -> bytes:
    """The batch's first 16 bytes with the assigned offset: stored before ``batch[16:]``
    so the (possibly megabytes long) batch is never copied just to change its offset."""
    return _STAMP.pack(base_offset, _INT32.unpack_from(batch, 8)[0], leader_epoch)


def set_log_append_time(batch: bytearray, now_ms: int) -> None:
    """LogAppendTime topics: the broker's clock replaces maxTimestamp and the CRC follows."""
    attributes = struct.unpack_from(">h", batch, _ATTRIBUTES_AT)[0]
    struct.pack_into(">h", batch, _ATTRIBUTES_AT, attributes | TIMESTAMP_TYPE_LOG_APPEND)
    _INT64.pack_into(batch, _MAX_TIMESTAMP_AT, now_ms)
    _UINT32.pack_into(batch, _CRC_AT, crc32c.crc32c(memoryview(batch)[_ATTRIBUTES_AT:]))


def recompress(batch: bytes | memoryview, info: BatchInfo, codec: int, limit: int) -> bytearray:
    """The same records under another codec (a topic's compression.type), CRC recomputed.

    Raises compression.CodecError if the records do not decompress within ``limit``.
    """
    view = memoryview(batch)
    raw = compression.decompress(info.compression, view[HEADER_SIZE : info.size], limit)
    body = compression.compress(codec, raw)
    out = bytearray(view[:HEADER_SIZE])
    out += body
    _INT32.pack_into(out, 8, len(out) - LENGTH_OVERHEAD)
    attributes = (info.attributes & ~COMPRESSION_MASK) | codec
    struct.pack_into(">h", out, _ATTRIBUTES_AT, attributes)
    _UINT32.pack_into(out, _CRC_AT, crc32c.crc32c(memoryview(out)[_ATTRIBUTES_AT:]))
    return out


def _records(batch: bytes | memoryview, limit: int) -> tuple[int, Iterator[RawRecord]]:
    """The batch's codec and its records (``kafka_batch.read_records``), for the few
    paths that look inside; anything unreadable, at once or part-way through the lazy
    iteration, is InvalidBatch (CORRUPT_MESSAGE)."""
    try:
        codec, found = read_records(batch, limit)
    except UnreadableBatch as exc:
        raise InvalidBatch(str(exc), CORRUPT_MESSAGE) from None
    return codec, _answerable(found)


def _answerable(found: Iterator[RawRecord]) -> Iterator[RawRecord]:
    try:
        yield from found
    except UnreadableBatch as exc:
        raise InvalidBatch(str(exc), CORRUPT_MESSAGE) from None


def records_of(batch: bytes | memoryview, limit: int) -> Iterator[RawRecord]:
    """Every record of a batch, decompressed; lazy, InvalidBatch may come part-way."""
    return _records(batch, limit)[1]


def record_timestamps(batch: bytes | memoryview, limit: int) -> Iterator[tuple[int, int]]:
    """(offset delta, timestamp) of each record: ListOffsets by timestamp needs the exact one.

    Lazy; InvalidBatch may come part-way through.
    """
    for record in _records(batch, limit)[1]:
        yield record.offset_delta, record.timestamp


CONTROL_ABORT, CONTROL_COMMIT = 0, 1


def control_batch(producer_id: int, epoch: int, commit: bool, timestamp_ms: int) -> bytearray:
    """A transaction marker: one control record whose key says commit or abort."""
    key = struct.pack(">hh", 0, CONTROL_COMMIT if commit else CONTROL_ABORT)
    value = struct.pack(">hi", 0, 0)  # version, coordinator epoch
    body = (
        b"\x00"
        + _varint(0)
        + _varint(0)
        + _varint(len(key))
        + key
        + _varint(len(value))
        + value
        + _varint(0)
    )
    records = _varint(len(body)) + body
    batch = bytearray(
        HEADER.pack(
            0,
            HEADER_SIZE - LENGTH_OVERHEAD + len(records),
            0,
            2,
            0,
            TRANSACTIONAL | CONTROL,
            0,
            timestamp_ms,
            timestamp_ms,
            producer_id,
            epoch,
            -1,
            1,
        )
    )
    batch += records
    _UINT32.pack_into(batch, _CRC_AT, crc32c.crc32c(memoryview(batch)[_ATTRIBUTES_AT:]))
    return batch


def control_type(batch: bytes | memoryview) -> int:
    """CONTROL_COMMIT or CONTROL_ABORT of a control batch (markers are never compressed).

    InvalidBatch if the marker cannot be read.
    """
    view = memoryview(batch)
    pos = HEADER_SIZE
    try:
        _, pos = _read_varint(view, pos)  # record length
        pos += 1  # attributes
        _, pos = _read_varint(view, pos)  # timestamp delta
        _, pos = _read_varint(view, pos)  # offset delta
        _, pos = _read_varint(view, pos)  # key length
        return int(struct.unpack_from(">h", view, pos + 2)[0])
    except (IndexError, struct.error):
        raise InvalidBatch("transaction marker record is truncated", CORRUPT_MESSAGE) from None
    except UnreadableBatch as exc:
        raise InvalidBatch(str(exc), CORRUPT_MESSAGE) from None


def varint(value: int) -> bytes:
    """Zigzag varint, as the record format encodes lengths, deltas and sizes."""
    return _varint(value)


read_varint = _read_varint


def _varint(value: int) -> bytes:
    """Zigzag varint, as the record format encodes lengths, deltas and sizes."""
    return uvarint((value << 1) ^ (value >> 63))


def record_keys(
    batch: bytes | memoryview, limit: int
) -> list[tuple[int, bytes | None, bool, int]]:
    """(offset delta, key, is tombstone, timestamp) of every record: what compaction needs.

    InvalidBatch if any record cannot be read.
    """
    return [
        (r.offset_delta, r.key, r.is_tombstone, r.timestamp) for r in _records(batch, limit)[1]
    ]


def keep_records(batch: bytes | memoryview, keep: set[int], limit: int) -> bytearray:
    """The batch with only the records whose offset delta is in ``keep``.

    Base offset, last offset delta, timestamps and producer fields stay as they were,
    so offsets and producer state remain intact even when no record is left (Kafka
    keeps such empty batches too). The records are re-compressed with the same codec.
    """
    codec, found = _records(batch, limit)
    kept = [r.raw for r in found if r.offset_delta in keep]
    body = compression.compress(codec, b"".join(kept)) if kept else b""
    out = bytearray(memoryview(batch)[:HEADER_SIZE])
    out += body
    _INT32.pack_into(out, 8, len(out) - LENGTH_OVERHEAD)
    _INT32.pack_into(out, 57, len(kept))
    _UINT32.pack_into(out, _CRC_AT, crc32c.crc32c(memoryview(out)[_ATTRIBUTES_AT:]))
    return out
