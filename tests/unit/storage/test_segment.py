"""One segment: the on-disk entry format, appends, reads, trimming, and recovery."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from crc32c import crc32c

from portask.storage.segment import (
    HEADER_SIZE,
    NO_TIMESTAMP,
    CorruptLogError,
    LogRecord,
    Segment,
)

INTERVAL = 256


@pytest.fixture
def segment(tmp_path: Path) -> Iterator[Segment]:
    seg = Segment.create(tmp_path, 1000, 1 << 16, 4096, INTERVAL, preallocate=True)
    yield seg
    seg.close()


def reopen(seg: Segment, trusted_until: int = 0) -> Segment:
    seg.close()
    again = Segment.open(seg.log_path, seg.base_offset, INTERVAL, 4096)
    again.recover(trusted_until)
    return again


def test_entry_layout_on_disk(segment: Segment) -> None:
    segment.append(b"hello", 5, 1000, 3, 1234)
    raw = segment.log_path.read_bytes()[: HEADER_SIZE + 5]
    length, crc, base, count, ts = struct.unpack_from("<IIQIq", raw)
    assert (length, base, count, ts) == (24 + 5, 1000, 3, 1234)
    assert crc == crc32c(raw[8:])
    assert raw[HEADER_SIZE:] == b"hello"
    assert segment.next_offset == 1003
    assert segment.size == HEADER_SIZE + 5


def test_preallocated_file_is_sparse_and_full_length(segment: Segment) -> None:
    st = segment.log_path.stat()
    assert st.st_size == 1 << 16
    assert st.st_blocks * 512 < 1 << 16


def test_read_returns_zero_copy_slices(segment: Segment) -> None:
    segment.append(b"abc", 3, 1000, 1, 1)
    segment.append(b"defg", 4, 1001, 2, 2)
    out: list[LogRecord] = []
    taken, full = segment.read(1000, 100, True, out)
    assert (taken, full) == (7, False)
    assert [(r.offset, r.count, r.timestamp, bytes(r.payload)) for r in out] == [
        (1000, 1, 1, b"abc"),
        (1001, 2, 2, b"defg"),
    ]
    assert isinstance(out[0].payload, memoryview)
    assert out[0].payload.readonly


def test_index_entry_every_interval_bytes(segment: Segment) -> None:
    for i in range(40):
        segment.append(b"x" * 100, 100, 1000 + i, 1, i)
    # Entries are 128 bytes: the first is indexed, then every second one (256 bytes).
    assert segment.index.entries == 20
    assert segment.index.entry(1) == (2, 256, 2)
    for offset in (1000, 1001, 1017, 1039):
        assert segment.position_of(offset) == (offset - 1000) * 128


def test_append_batch_matches_single_appends(tmp_path: Path) -> None:
    payloads = [bytes([i % 251]) * (i * 7 % 300) for i in range(200)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Segment.create(tmp_path / "a", 0, 1 << 17, 4096, INTERVAL, True)
    b = Segment.create(tmp_path / "b", 0, 1 << 17, 4096, INTERVAL, True)
    try:
        for i, p in enumerate(payloads):
            a.append(p, len(p), i, 1, 77)
        total = sum(map(len, payloads)) + HEADER_SIZE * len(payloads)
        b.append_batch(payloads, 0, 77, total)
        assert a.size == b.size == total
        assert a.log_path.read_bytes()[:total] == b.log_path.read_bytes()[:total]
        assert a.index.entries == b.index.entries
        assert [a.index.entry(i) for i in range(a.index.entries)] == [
            b.index.entry(i) for i in range(b.index.entries)
        ]
    finally:
        a.close()
        b.close()


def test_append_batch_rejects_wide_memoryviews(segment: Segment) -> None:
    wide = memoryview(bytearray(8)).cast("I")  # len() is 2, but it holds 8 bytes
    with pytest.raises(ValueError):
        segment.append_batch([wide], 1000, 0, HEADER_SIZE + len(wide))
    assert segment.size == 0


def test_truncate_zeroes_tail_and_restores_state(segment: Segment) -> None:
    for i in range(30):
        segment.append(b"y" * 100, 100, 1000 + 2 * i, 2, 100 - i if i < 10 else i)
    cut = segment.position_of(1020)
    segment.truncate(cut)
    assert segment.next_offset == 1020
    assert segment.size == cut
    assert segment.max_timestamp == 100
    assert segment.log_path.read_bytes()[cut : cut + 4096] == bytes(4096)
    assert all(segment.index.entry(i)[1] < cut for i in range(segment.index.entries))
    segment.append(b"z", 1, 1020, 1, 5)
    out: list[LogRecord] = []
    segment.read(1018, 1000, True, out)
    assert [r.offset for r in out] == [1018, 1020]


def test_truncate_to_empty(segment: Segment) -> None:
    segment.append(b"a", 1, 1000, 1, 5)
    segment.truncate(0)
    assert (segment.size, segment.next_offset, segment.max_timestamp) == (0, 1000, NO_TIMESTAMP)
    segment.append(b"b", 1, 1000, 1, 6)
    assert segment.index.entries == 1


def test_recover_finds_end_and_rebuilds_index(segment: Segment) -> None:
    for i in range(50):
        segment.append(b"q" * 60, 60, 1000 + i, 1, i)
    size, entries = segment.size, segment.index.entries
    segment.index.path.unlink()
    again = reopen(segment)
    try:
        assert again.size == size
        assert again.next_offset == 1050
        assert again.index.entries == entries
        assert again.max_timestamp == 49
        assert again.max_timestamp_offset == 1049
    finally:
        again.close()


def test_recover_stops_at_bad_crc_after_trusted_point(segment: Segment) -> None:
    for i in range(10):
        segment.append(b"w" * 60, 60, 1000 + i, 1, i)
    seventh = segment.position_of(1007)
    with segment.log_path.open("r+b") as f:
        f.seek(seventh + HEADER_SIZE + 3)
        f.write(b"!")
    segment.close()
    trusting = Segment.open(segment.log_path, 1000, INTERVAL, 4096)
    untrusting = Segment.open(segment.log_path, 1000, INTERVAL, 4096)
    try:
        # Trusted data is not CRC-checked: recovery believes what was synced.
        assert trusting.recover(trusted_until=seventh + 88).problem is None
        assert trusting.next_offset == 1010
        result = untrusting.recover(trusted_until=0)
        assert result == (seventh, "CRC mismatch")
        assert untrusting.next_offset == 1007
    finally:
        trusting.close()
        untrusting.close()


def test_corrupt_index_entry_is_reported_on_read(segment: Segment) -> None:
    for i in range(20):
        segment.append(b"e" * 100, 100, 1000 + i, 1, i)
    with segment.index.path.open("r+b") as f:
        f.seek(16 * 3 + 4)
        f.write((129).to_bytes(4, "little"))  # not an entry boundary
    with pytest.raises(CorruptLogError, match="does not point at offset"):
        segment.position_of(1007)


def test_nonzero_extent_skips_holes(segment: Segment) -> None:
    segment.append(b"a" * 10, 10, 1000, 1, 0)
    assert segment.nonzero_extent(segment.size) == segment.size
    with segment.log_path.open("r+b") as f:
        f.seek(40_000)
        f.write(b"junk")
    assert segment.nonzero_extent(segment.size) == 40_004
