"""RecordBatch (magic 2) framing, checked against kafka-python's own batch codec: split
and describe, refuse with Kafka's codes, stamp offsets, LogAppendTime, recompress, keep
records, control markers. (test_records.py covers the checks inside a batch.)

kafka-python builds the batches the broker receives and reads back the ones it
rewrites, so a mistake shared by our encoder and our parser cannot pass unseen.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import crc32c
import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from portask.protocols.kafka import records

GZIP, LZ4, ZSTD = 1, 3, 4
LIMIT = 64 << 20  # kafka.max_uncompressed_batch_bytes, far above these batches


def build(
    values: list[tuple[bytes | None, bytes | None]],
    *,
    codec: int = 0,
    producer_id: int = -1,
    epoch: int = -1,
    sequence: int = -1,
    transactional: bool = False,
    first_timestamp: int = 1_700_000_000_000,
) -> bytearray:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=int(transactional),
        producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence,
        batch_size=1 << 20,
    )
    for i, (key, value) in enumerate(values):
        builder.append(i, timestamp=first_timestamp + i, key=key, value=value, headers=[])
    return builder.build()


def read(batch: bytes | bytearray) -> DefaultRecordBatch:
    return DefaultRecordBatch(bytes(batch))


def with_crc(batch: bytearray) -> bytearray:
    struct.pack_into(">I", batch, 17, crc32c.crc32c(bytes(batch[21:])))
    return batch


def test_two_batches_are_split_and_described() -> None:
    first = build([(b"k0", b"v0"), (b"k1", b"v1"), (None, b"v2")])
    second = build([(b"a", bytes(500))], codec=GZIP, producer_id=7, epoch=2, sequence=40)
    infos = records.parse_batches(bytes(first + second))
    assert [(i.start, i.size) for i in infos] == [(0, len(first)), (len(first), len(second))]
    assert [(i.records_count, i.offset_count, i.compression) for i in infos] == [
        (3, 3, 0), (1, 1, GZIP)
    ]
    assert (infos[1].producer_id, infos[1].producer_epoch, infos[1].base_sequence) == (7, 2, 40)
    assert infos[0].max_timestamp == read(first).max_timestamp
    assert not infos[0].is_transactional and not infos[0].is_control


def test_a_transactional_batch_is_marked_so() -> None:
    (info,) = records.parse_batches(build([(b"k", b"v")], producer_id=3, epoch=0,
                                          sequence=0, transactional=True))
    assert info.is_transactional and not info.is_control


@pytest.mark.parametrize(
    ("mangle", "code", "message"),
    [
        (lambda b: b[: records.HEADER_SIZE - 1], records.CORRUPT_MESSAGE, "truncated"),
        (lambda b: b[:-1], records.CORRUPT_MESSAGE, "does not fit"),
        (lambda b: b[:16] + b"\x01" + b[17:], records.UNSUPPORTED_FOR_MESSAGE_FORMAT, "magic 1"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), records.CORRUPT_MESSAGE, "CRC-32C"),
        (lambda b: with_crc(b[:57] + struct.pack(">i", 0) + b[61:]), records.INVALID_RECORD,
         "0 records"),
        (lambda b: with_crc(b[:23] + struct.pack(">i", -1) + b[27:]), records.INVALID_RECORD,
         "last offset delta -1"),
    ],
    ids=["short header", "short batch", "magic 1", "bad crc", "no records", "negative delta"],
)
def test_a_bad_batch_is_refused_with_kafkas_error(
    mangle: Callable[[bytearray], bytearray], code: int, message: str
) -> None:
    batch = mangle(build([(b"k", b"v"), (b"k2", b"v2")]))
    with pytest.raises(records.InvalidBatch, match=message) as raised:
        records.parse_batches(bytes(batch))
    assert raised.value.code == code


def test_a_good_batch_after_a_bad_one_does_not_hide_it() -> None:
    good = build([(b"k", b"v")])
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    with pytest.raises(records.InvalidBatch, match="CRC"):
        records.parse_batches(bytes(good + bad))


def test_stamping_writes_offset_and_epoch_outside_the_crc() -> None:
    batch = build([(b"k", b"v"), (b"k", b"w")])
    original = bytes(batch)
    records.stamp(batch, 1234, leader_epoch=0)
    stamped = read(batch)
    assert stamped.base_offset == 1234
    assert stamped.leader_epoch == 0
    assert stamped.validate_crc()
    assert [r.offset for r in stamped] == [1234, 1235]
    assert bytes(batch[16:]) == original[16:]  # magic onwards untouched


def test_the_stamped_prefix_equals_stamping_a_copy() -> None:
    batch = build([(b"k", b"v")])
    copy = bytearray(batch)
    records.stamp(copy, 99)
    prefix = records.stamped_prefix(memoryview(batch), 99)
    assert len(prefix) == records.STAMP_SIZE
    assert prefix + bytes(batch[records.STAMP_SIZE :]) == bytes(copy)


def test_log_append_time_replaces_max_timestamp_and_keeps_the_crc_valid() -> None:
    batch = build([(b"k", b"v"), (b"k", b"w")])
    records.set_log_append_time(batch, 1_800_000_000_123)
    stamped = read(batch)
    assert stamped.validate_crc()
    assert stamped.timestamp_type == 1  # LogAppendTime
    assert stamped.max_timestamp == 1_800_000_000_123
    assert [r.timestamp for r in stamped] == [1_800_000_000_123] * 2


@pytest.mark.parametrize("codec", [GZIP, LZ4, ZSTD])
def test_recompressing_keeps_every_record(codec: int) -> None:
    values = [(f"k{i}".encode(), bytes(200) + bytes([i])) for i in range(20)]
    batch = build(values)
    assert read(batch).compression_type == 0
    (info,) = records.parse_batches(batch)
    out = records.recompress(batch, info, codec, LIMIT)
    again = read(out)
    assert again.validate_crc()
    assert again.compression_type == codec
    assert [(r.key, r.value) for r in again] == values
    (reparsed,) = records.parse_batches(bytes(out))
    assert (reparsed.size, reparsed.records_count) == (len(out), 20)


@pytest.mark.parametrize("codec", [0, GZIP, ZSTD])
def test_keys_tombstones_and_timestamps_are_read_from_any_codec(codec: int) -> None:
    filler = bytes(300)  # compressible, so the builder really compresses
    batch = build([(b"a", filler), (None, filler), (b"c", None)], codec=codec,
                  first_timestamp=5_000)
    assert read(batch).compression_type == codec
    assert records.record_keys(batch, LIMIT) == [
        (0, b"a", False, 5_000), (1, None, False, 5_001), (2, b"c", True, 5_002)
    ]
    assert list(records.record_timestamps(batch, LIMIT)) == [(0, 5_000), (1, 5_001), (2, 5_002)]


@pytest.mark.parametrize("codec", [0, LZ4])
def test_keeping_some_records_keeps_their_offsets_and_the_batch_span(codec: int) -> None:
    values = [(b"a", bytes(300) + b"1"), (b"b", bytes(300) + b"2"), (b"a", bytes(300) + b"3"),
              (b"b", bytes(300) + b"4")]
    batch = build(values, codec=codec)
    assert read(batch).compression_type == codec
    records.stamp(batch, 100)
    kept = records.keep_records(batch, {2, 3}, LIMIT)
    out = read(kept)
    assert out.validate_crc()
    assert out.compression_type == codec
    assert [(r.offset, r.key, r.value) for r in out] == [
        (102, b"a", values[2][1]), (103, b"b", values[3][1])
    ]
    assert (out.base_offset, out.last_offset_delta) == (100, 3)  # offsets never move
    (info,) = records.parse_batches(bytes(kept))
    assert info.offset_count == 4 and info.records_count == 2


def test_keeping_no_record_leaves_an_empty_batch_with_its_offsets() -> None:
    batch = build([(b"a", b"1"), (b"a", b"2")])
    empty = records.keep_records(batch, set(), LIMIT)
    out = read(empty)
    assert out.validate_crc()
    assert list(out) == []
    assert out.last_offset_delta == 1


@pytest.mark.parametrize("commit", [True, False])
def test_a_control_batch_is_a_transaction_marker(commit: bool) -> None:
    marker = records.control_batch(producer_id=42, epoch=3, commit=commit, timestamp_ms=77)
    read_back = read(marker)
    assert read_back.validate_crc()
    assert read_back.is_control_batch and read_back.is_transactional
    assert (read_back.producer_id, read_back.producer_epoch) == (42, 3)
    (info,) = records.parse_batches(bytes(marker))
    assert info.is_control and info.records_count == 1
    expected = records.CONTROL_COMMIT if commit else records.CONTROL_ABORT
    assert records.control_type(marker) == expected
