"""Legacy message sets (magic 0/1): Produce v0-2 converted in, Fetch v0-3 converted out.

kafka-python's legacy record builder and reader are the independent codec: what it
writes must convert into a record batch holding the same messages, and what the
broker writes for an old fetcher must read back through it with offsets, keys, values
and timestamps intact. Mutated message sets are converted or refused with a Kafka
error code, never anything else, within the bytes received.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from kafka.record.legacy_records import LegacyRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from portask.broker.log import compression
from portask.protocols.kafka import message_sets, records
from tests.allocation import bounded
from tests.kafka_batches import Record, batch
from tests.mutation import fuzz_settings, mutate

LIMIT = 64 << 20
_LEGACY_CODECS = (compression.NONE, compression.GZIP, compression.SNAPPY, compression.LZ4)


def _legacy(
    magic: int, codec: int, messages: list[tuple[int, bytes | None, bytes | None]]
) -> bytes:
    builder = LegacyRecordBatchBuilder(magic, codec, 1 << 20)
    for offset, (timestamp, key, value) in enumerate(messages):
        builder.append(offset, timestamp if magic else None, key, value)
    return bytes(builder.build())


def _read_legacy(data: bytes) -> list[tuple[int, int | None, bytes | None, bytes | None]]:
    out = []
    batches = MemoryRecords(data)
    while True:
        b = batches.next_batch()
        if b is None:
            return out
        out.extend((r.offset, r.timestamp, r.key, r.value) for r in b)


SAMPLE = [(1_700_000_000_000 + i, f"k{i}".encode(), f"v{i}".encode() * 3) for i in range(5)]
SAMPLE_WITH_NULLS = [
    *SAMPLE, (1_700_000_000_009, None, b"no key"), (1_700_000_000_010, b"gone", None)
]


@pytest.mark.parametrize("magic", [0, 1])
@pytest.mark.parametrize("codec", _LEGACY_CODECS)
def test_a_message_set_from_an_old_producer_becomes_one_batch_with_the_same_messages(
    magic: int, codec: int
) -> None:
    converted = message_sets.to_record_batch(_legacy(magic, codec, SAMPLE_WITH_NULLS), LIMIT)
    [info] = records.parse_batches(converted)
    assert info.records_count == len(SAMPLE_WITH_NULLS) and info.compression == compression.NONE
    found = message_sets.batch_messages(memoryview(converted), LIMIT)
    assert [(o, k, v) for o, _, _, k, v in found] == [
        (i, k, v) for i, (_, k, v) in enumerate(SAMPLE_WITH_NULLS)
    ]
    if magic == 1:
        assert [t for _, t, _, _, _ in found] == [t for t, _, _ in SAMPLE_WITH_NULLS]
        assert info.max_timestamp == max(t for t, _, _ in SAMPLE_WITH_NULLS)
    else:  # magic 0 has no timestamps: Kafka's up-conversion writes -1
        assert {t for _, t, _, _, _ in found} == {-1} and info.max_timestamp == -1


@pytest.mark.parametrize(("magic", "timestamps"), [(0, False), (1, True)])
@pytest.mark.parametrize("codec", [compression.NONE, compression.GZIP, compression.ZSTD])
def test_stored_batches_read_back_through_an_old_client_reader(
    magic: int, timestamps: bool, codec: int
) -> None:
    stored = [
        batch([Record(b"a", b"1", ((b"h", b"x"),), 0), Record(None, b"2", (), 5)], codec),
        batch([Record(b"c", None, (), 7)], compression.NONE),
    ]
    # Give the batches their log offsets, as the segment holds them.
    views = []
    for base, b in zip((10, 12), stored, strict=True):
        stamped = bytearray(b)
        struct.pack_into(">q", stamped, 0, base)
        views.append(memoryview(bytes(stamped)))
    out = message_sets.from_record_batches(views, 11, magic, 1 << 20, LIMIT)
    read = _read_legacy(out)
    assert [(o, k, v) for o, _, k, v in read] == [(11, None, b"2"), (12, b"c", None)]
    base_ts = struct.unpack_from(">q", stored[0], 27)[0]
    expected = [base_ts + 5, struct.unpack_from(">q", stored[1], 27)[0] + 7]
    assert [t for _, t, _, _ in read] == (expected if timestamps else [None, None])


def test_control_batches_are_not_sent_to_old_fetchers() -> None:
    marker = bytearray(records.control_batch(7, 0, commit=True, timestamp_ms=1))
    data = message_sets.build_record_batch([(5, b"k", b"v")])
    out = message_sets.from_record_batches(
        [memoryview(bytes(marker)), memoryview(data)], 0, 1, 1 << 20, LIMIT
    )
    assert [(o, k, v) for o, _, k, v in _read_legacy(out)] == [(0, b"k", b"v")]


def test_max_bytes_stops_before_a_message_that_does_not_fit_but_never_before_the_first() -> None:
    data = memoryview(message_sets.build_record_batch([(1, b"k", b"x" * 100)] * 3))
    one = len(message_sets.encode_message(0, 1, 1, False, b"k", b"x" * 100))
    assert len(_read_legacy(message_sets.from_record_batches([data], 0, 1, 10, LIMIT))) == 1
    assert len(_read_legacy(message_sets.from_record_batches([data], 0, 1, 2 * one, LIMIT))) == 2


def test_a_bad_crc_is_corrupt_message() -> None:
    data = bytearray(_legacy(1, compression.NONE, SAMPLE))
    data[-1] ^= 0xFF
    with pytest.raises(message_sets.InvalidMessageSet, match="CRC") as caught:
        message_sets.to_record_batch(bytes(data), LIMIT)
    assert caught.value.code == message_sets.CORRUPT_MESSAGE


@pytest.mark.parametrize("cut", [1, 11, 17, 30])
def test_a_truncated_message_set_is_corrupt_message(cut: int) -> None:
    data = _legacy(0, compression.NONE, SAMPLE)
    with pytest.raises(message_sets.InvalidMessageSet) as caught:
        message_sets.to_record_batch(data[: len(data) - cut], LIMIT)
    assert caught.value.code == message_sets.CORRUPT_MESSAGE


def test_an_empty_message_set_is_refused() -> None:
    with pytest.raises(message_sets.InvalidMessageSet, match="no message"):
        message_sets.to_record_batch(b"", LIMIT)


def _wrapper(magic: int, codec: int, value: bytes) -> bytes:
    body = struct.pack(">bb", magic, codec) + (struct.pack(">q", 0) if magic else b"")
    body += struct.pack(">i", -1) + struct.pack(">i", len(value)) + value
    return struct.pack(">qiI", 0, len(body) + 4, zlib.crc32(body)) + body


def test_zstd_is_not_allowed_before_magic_2() -> None:
    inner = _legacy(1, compression.NONE, SAMPLE)
    with pytest.raises(message_sets.InvalidMessageSet) as caught:
        message_sets.to_record_batch(_wrapper(1, 4, compression.compress(4, inner)), LIMIT)
    assert caught.value.code == message_sets.UNSUPPORTED_COMPRESSION_TYPE


def test_a_compressed_message_inside_a_compressed_message_is_refused() -> None:
    inner = _legacy(1, compression.GZIP, SAMPLE)
    with pytest.raises(message_sets.InvalidMessageSet, match="inside a compressed"):
        message_sets.to_record_batch(
            _wrapper(1, compression.GZIP, compression.compress(compression.GZIP, inner)), LIMIT
        )


def test_a_wrapper_that_expands_past_the_limit_is_message_too_large() -> None:
    inner = _legacy(1, compression.NONE, [(1, b"k", b"\x00" * 100_000)])
    wrapped = _wrapper(1, compression.GZIP, compression.compress(compression.GZIP, inner))
    with pytest.raises(message_sets.InvalidMessageSet) as caught:
        message_sets.to_record_batch(wrapped, 50_000)
    assert caught.value.code == message_sets.MESSAGE_TOO_LARGE


_messages = st.lists(
    st.tuples(st.integers(0, 2**41), st.none() | st.binary(max_size=10),
              st.none() | st.binary(max_size=30)),
    min_size=1, max_size=4,
)


@pytest.mark.fuzz
@fuzz_settings()
@given(
    messages=_messages,
    magic=st.sampled_from((0, 1)),
    codec=st.sampled_from(_LEGACY_CODECS),
    data=st.data(),
)
def test_mutated_message_sets_convert_or_are_refused_with_a_kafka_error(
    messages: list[tuple[int, bytes | None, bytes | None]], magic: int, codec: int,
    data: st.DataObject,
) -> None:
    original = _legacy(magic, codec, messages)
    mutated = mutate(original, lambda low, high: data.draw(st.integers(low, high)))
    converted, error = bounded(
        message_sets.to_record_batch, (mutated, LIMIT), len(mutated), "to_record_batch",
        native=False,
    )
    event("refused" if error is not None else "converted")
    if error is not None:
        assert isinstance(error, message_sets.InvalidMessageSet), repr(error)
        assert error.code in (2, 10, 76)
        return
    # Whatever was accepted is a valid batch whose records the broker can read back.
    [info] = records.parse_batches(converted)
    assert len(message_sets.batch_messages(memoryview(converted), LIMIT)) == info.records_count
