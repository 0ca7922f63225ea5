"""Record batches: what produce checks inside a batch, and readers that never trip on
stored bytes (ListOffsets by timestamp, compaction, transaction markers).

Batches are built with kafka-python's encoder, an implementation independent of Portask.
"""

from __future__ import annotations

import struct

import crc32c
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatchBuilder

from portask.protocols.kafka import records
from portask.protocols.kafka.records import InvalidBatch

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
LIMIT = 64 << 20


def build(codec: int, count: int = 20, key: bool = True) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=False, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )
    for i in range(count):
        builder.append(i, timestamp=1000 + i, key=b"k%d" % i if key else None,
                       value=b"value %d " % i * 20, headers=[])
    return bytes(builder.build())


def with_records(batch: bytes, codec: int, body: bytes, count: int | None = None) -> bytes:
    """The batch's header with other records bytes, the codec bits set, CRC made valid."""
    out = bytearray(batch[:61]) + body
    struct.pack_into(">i", out, 8, len(out) - 12)
    attributes = struct.unpack_from(">h", out, 21)[0]
    struct.pack_into(">h", out, 21, (attributes & ~0x07) | codec)
    if count is not None:
        struct.pack_into(">i", out, 57, count)
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    return bytes(out)


def info_of(batch: bytes) -> records.BatchInfo:
    (info,) = records.parse_batches(batch)
    return info


@pytest.mark.parametrize("codec", list(CODECS.values()), ids=list(CODECS))
def test_client_batches_pass_the_produce_check(codec: int) -> None:
    batch = build(codec)
    records.check_records(batch, info_of(batch), LIMIT)
    assert [ts for _, ts in records.record_timestamps(batch, LIMIT)] == list(range(1000, 1020))
    assert [k for _, k, _, _ in records.record_keys(batch, LIMIT)] == [
        b"k%d" % i for i in range(20)
    ]


@pytest.mark.parametrize("codec", [1, 2, 3, 4], ids=["gzip", "snappy", "lz4", "zstd"])
def test_garbage_compressed_records_with_a_valid_crc_are_corrupt_message(codec: int) -> None:
    batch = with_records(build(0), codec, b"these are not compressed records" * 4)
    with pytest.raises(InvalidBatch) as raised:
        records.check_records(batch, info_of(batch), LIMIT)
    assert raised.value.code == records.CORRUPT_MESSAGE


def test_more_records_claimed_than_the_bytes_can_hold_is_corrupt_message() -> None:
    batch = build(0, count=3)
    lying = with_records(batch, 0, batch[61:], count=1000)
    with pytest.raises(InvalidBatch, match="claims 1000 records") as raised:
        records.check_records(lying, info_of(lying), LIMIT)
    assert raised.value.code == records.CORRUPT_MESSAGE


def test_records_that_expand_past_the_limit_are_message_too_large() -> None:
    bomb = zstandard.ZstdCompressor().compress(bytes(8 << 20))
    batch = with_records(build(0), 4, bomb)
    with pytest.raises(InvalidBatch) as raised:
        records.check_records(batch, info_of(batch), 4 << 20)
    assert raised.value.code == records.MESSAGE_TOO_LARGE


def test_readers_of_unreadable_stored_records_raise_invalid_batch() -> None:
    garbage = with_records(build(0), 3, b"\x04\x22\x4d\x18" + b"junk" * 10)
    with pytest.raises(InvalidBatch):
        list(records.record_timestamps(garbage, LIMIT))
    with pytest.raises(InvalidBatch):
        records.record_keys(garbage, LIMIT)
    with pytest.raises(InvalidBatch):
        records.keep_records(garbage, {0}, LIMIT)


def test_a_stored_batch_past_a_lowered_limit_is_unreadable_not_a_memory_spike() -> None:
    values = zstandard.ZstdCompressor().compress(build(0)[61:] + bytes(2 << 20))
    batch = with_records(build(0), 4, values)
    with pytest.raises(InvalidBatch, match="more than"):
        list(records.record_timestamps(batch, 1 << 20))


def test_a_truncated_transaction_marker_is_invalid_batch() -> None:
    marker = records.control_batch(7, 0, True, 1000)
    assert records.control_type(marker) == records.CONTROL_COMMIT
    with pytest.raises(InvalidBatch):
        records.control_type(bytes(marker[:63]))


@st.composite
def mutated_batches(draw: st.DrawFn) -> bytes:
    codec = draw(st.sampled_from([0, 0, 1, 3, 4]))
    batch = build(codec, count=draw(st.integers(1, 8)), key=draw(st.booleans()))
    if codec:
        body = bytearray(records.compression.decompress(codec, batch[61:], LIMIT))
    else:
        body = bytearray(batch[61:])
    kind = draw(st.sampled_from(["flip", "truncate", "varint run", "huge length"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 6))):
            body[draw(st.integers(0, len(body) - 1))] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del body[draw(st.integers(0, len(body) - 1)) :]
    elif kind == "varint run":
        at = draw(st.integers(0, len(body) - 1))
        body[at:at] = b"\xff" * draw(st.integers(1, 5000))
    else:
        body[0:1] = b"\xfe\xff\xff\xff\x0f"
    body_bytes = bytes(body)
    if codec:
        body_bytes = records.compression.compress(codec, body_bytes)
    return with_records(batch, codec, body_bytes)


@settings(max_examples=400, deadline=None)
@given(mutated_batches())
def test_readers_raise_nothing_but_invalid_batch_on_mutated_records(batch: bytes) -> None:
    for read in (
        lambda: list(records.record_timestamps(batch, LIMIT)),
        lambda: records.record_keys(batch, LIMIT),
        lambda: records.keep_records(batch, {0, 2}, LIMIT),
    ):
        try:
            read()
        except InvalidBatch as exc:
            assert exc.code == records.CORRUPT_MESSAGE
