"""The log API: appends, reads, rolls, lookups, trimming, retention, flushing."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import random
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from portask.storage import (
    Log,
    LogConfig,
    OffsetOutOfRange,
    StorageError,
    TimestampAndOffset,
)
from portask.storage.segment import HEADER_SIZE

if TYPE_CHECKING:
    from conftest import FakeClock

OpenLog = Callable[..., Log]
ReadAll = Callable[[Log], list[tuple[int, int, int, bytes]]]
PayloadFor = Callable[..., bytes]

SMALL = LogConfig(segment_bytes=4096, index_interval_bytes=256, segment_ms=None)


def test_append_and_read_round_trip(open_log: OpenLog, payload_for: PayloadFor) -> None:
    log = open_log(SMALL)
    for i in range(100):
        assert log.append(payload_for(i), timestamp=i) == i
    records = log.read(0, 1 << 20)
    assert [(r.offset, r.count, r.timestamp) for r in records] == [(i, 1, i) for i in range(100)]
    assert all(bytes(r.payload) == payload_for(r.offset) for r in records)
    assert (log.start_offset, log.end_offset) == (0, 100)


def test_entries_spanning_many_offsets(open_log: OpenLog) -> None:
    log = open_log(SMALL)
    assert log.append(b"batch-of-100", count=100) == 0
    assert log.append(b"single") == 100
    assert log.append(b"batch-of-5", count=5) == 101
    assert log.end_offset == 106
    assert [(r.offset, r.count) for r in log.read(0, 1000)] == [(0, 100), (100, 1), (101, 5)]


def test_read_inside_a_multi_offset_entry_returns_the_whole_entry(open_log: OpenLog) -> None:
    log = open_log(SMALL)
    log.append(b"a", count=10)
    log.append(b"b", count=10)
    for offset in (0, 5, 9):
        assert [r.offset for r in log.read(offset, 1000)] == [0, 10]
    assert [bytes(r.payload) for r in log.read(15, 1000)] == [b"b"]


def test_read_at_end_is_empty_and_out_of_range_raises(open_log: OpenLog) -> None:
    log = open_log(SMALL)
    assert log.read(0, 100) == []
    log.append(b"x", count=3)
    assert log.read(3, 100) == []
    with pytest.raises(OffsetOutOfRange):
        log.read(4, 100)
    log.delete_before(2)
    with pytest.raises(OffsetOutOfRange):
        log.read(1, 100)
    assert [r.offset for r in log.read(2, 100)] == [0]


def test_read_respects_max_bytes_and_min_one(open_log: OpenLog) -> None:
    log = open_log(LogConfig(segment_bytes=1 << 20))
    for size in (100, 100, 100, 500):
        log.append(b"p" * size)
    assert [r.offset for r in log.read(0, 250)] == [0, 1]
    assert [r.offset for r in log.read(0, 300)] == [0, 1, 2]
    assert [r.offset for r in log.read(3, 10)] == [3]  # KIP-74: one even if too large
    assert log.read(3, 10, min_one=False) == []
    assert [r.offset for r in log.read(0, 0)] == [0]
    assert log.read(0, 0, min_one=False) == []


def test_read_spans_segments(open_log: OpenLog, payload_for: PayloadFor) -> None:
    log = open_log(SMALL)
    for i in range(200):
        log.append(payload_for(i, 100))
    assert log.segment_count > 5
    records = log.read(10, 50 * 100)
    assert [r.offset for r in records] == list(range(10, 60))
    assert all(bytes(r.payload) == payload_for(r.offset, 100) for r in records)


def test_roll_by_size_trims_closed_segments(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log(SMALL)
    for _ in range(100):
        log.append(b"x" * 100)  # 128 bytes per entry: 32 per 4096-byte segment
    assert log.segment_base_offsets == [0, 32, 64, 96]
    assert (log_dir / "00000000000000000032.log").stat().st_size == 4096
    assert (log_dir / "00000000000000000096.log").stat().st_size == 4096  # pre-allocated
    assert (log_dir / "00000000000000000000.index").stat().st_size == 16 * 16
    assert log.size_bytes == 100 * 128


def test_roll_by_time(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log(LogConfig(segment_ms=1000))
    log.append(b"a")
    clock.advance_ms(999)
    log.append(b"b")
    assert log.segment_count == 1
    clock.advance_ms(1)
    log.append(b"c")
    assert log.segment_base_offsets == [0, 2]
    clock.advance_ms(5000)
    log.append_many([b"d", b"e"])
    assert log.segment_base_offsets == [0, 2, 3]


def test_roll_when_index_is_full(open_log: OpenLog) -> None:
    log = open_log(LogConfig(index_max_bytes=32, index_interval_bytes=0))
    for _ in range(5):
        log.append(b"z")
    assert log.segment_base_offsets == [0, 2, 4]


def test_oversized_entry_gets_its_own_segment(open_log: OpenLog) -> None:
    log = open_log(SMALL)
    log.append(b"small")
    big = os.urandom(10_000)
    assert log.append(big) == 1
    log.append(b"after")
    assert log.segment_base_offsets == [0, 1, 2]
    assert bytes(log.read(1, 1)[0].payload) == big
    log.close()
    log = open_log(SMALL)
    assert bytes(log.read(1, 1)[0].payload) == big
    assert log.end_offset == 3


def test_first_entry_of_empty_log_may_be_oversized(open_log: OpenLog) -> None:
    log = open_log(SMALL)
    big = os.urandom(9000)
    log.append(big)
    log.append(b"next")
    assert log.segment_base_offsets == [0, 1]
    assert bytes(log.read(0, 1)[0].payload) == big


def test_index_lookup_across_many_entries(open_log: OpenLog, payload_for: PayloadFor) -> None:
    log = open_log(LogConfig(segment_bytes=1 << 20, index_interval_bytes=1024))
    offsets = []
    for i in range(5000):
        offsets.append(log.append(payload_for(i, 50 + i % 300), count=1 + i % 3))
    rng = random.Random(7)
    for _ in range(500):
        i = rng.randrange(len(offsets))
        target = offsets[i] + rng.randrange(1 + i % 3)
        first = log.read(target, 1)[0]
        assert first.offset == offsets[i]
        assert bytes(first.payload) == payload_for(i, 50 + i % 300)


def test_append_many_assigns_consecutive_offsets(open_log: OpenLog, clock: FakeClock) -> None:
    log = open_log(SMALL)
    log.append(b"first", count=2)
    assert log.append_many([b"a", memoryview(b"bb"), bytearray(b"ccc")]) == 2
    assert log.append_many([]) == 5
    records = log.read(2, 100)
    assert [(r.offset, bytes(r.payload), r.timestamp) for r in records] == [
        (2, b"a", clock.ms), (3, b"bb", clock.ms), (4, b"ccc", clock.ms)
    ]


def test_append_many_across_rolls_equals_single_appends(
    tmp_path: Path, clock: FakeClock, read_all: ReadAll
) -> None:
    payloads = [bytes([i % 256]) * (i * 37 % 700) for i in range(300)]
    single = Log.open(tmp_path / "single", SMALL, clock=clock)
    many = Log.open(tmp_path / "many", SMALL, clock=clock)
    try:
        for p in payloads:
            single.append(p, timestamp=5)
        for i in range(0, 300, 64):
            many.append_many(payloads[i : i + 64], timestamp=5)
        assert single.segment_base_offsets == many.segment_base_offsets
        assert read_all(single) == read_all(many)
    finally:
        single.close()
        many.close()


def test_memoryview_payloads_are_stored_by_bytes(open_log: OpenLog) -> None:
    log = open_log(SMALL)
    wide = memoryview(bytearray(range(8))).cast("I")
    log.append(wide)
    assert bytes(log.read(0, 100)[0].payload) == bytes(range(8))
    with pytest.raises(ValueError):
        log.append_many([wide])
    assert log.end_offset == 1


def test_offset_for_timestamp(open_log: OpenLog) -> None:
    log = open_log(LogConfig(segment_bytes=2048, index_interval_bytes=100))
    timestamps = [10, 20, 15, 30, 25, 40, 35, 50] * 20
    for ts in timestamps:
        log.append(b"t" * 40, count=2, timestamp=ts)
    assert log.segment_count > 1
    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(16) == 2
    assert log.offset_for_timestamp(26) == 6
    assert log.offset_for_timestamp(50) == 14
    assert log.offset_for_timestamp(51) is None
    log.delete_before(21)
    assert log.offset_for_timestamp(16) == 22
    assert log.max_timestamp == TimestampAndOffset(50, 30)


def test_offset_for_timestamp_late_in_a_segment(open_log: OpenLog) -> None:
    log = open_log(LogConfig(index_interval_bytes=4096))
    for i in range(10_000):
        log.append(b"m" * 20, timestamp=i)
    for target in (0, 1, 4097, 9999):
        assert log.offset_for_timestamp(target) == target


def test_max_timestamp_survives_reopen(open_log: OpenLog) -> None:
    log = open_log(SMALL)
    assert log.max_timestamp is None
    for i, ts in enumerate([5, 9, 3, 9, 7] * 30):
        log.append(b"y" * 60, timestamp=ts + (100 if i == 77 else 0))
    assert log.max_timestamp == TimestampAndOffset(103, 77)
    log.close()
    assert open_log(SMALL).max_timestamp == TimestampAndOffset(103, 77)


def test_truncate_to_within_active_segment(open_log: OpenLog, read_all: ReadAll) -> None:
    log = open_log(SMALL)
    for i in range(10):
        log.append(bytes([i]), count=2, timestamp=i)
    log.truncate_to(12)
    assert log.end_offset == 12
    assert [r[0] for r in read_all(log)] == [0, 2, 4, 6, 8, 10]
    assert log.append(b"new") == 12
    log.close()
    log = open_log(SMALL)
    assert [(r[0], r[3]) for r in read_all(log)][-2:] == [(10, b"\x05"), (12, b"new")]


def test_truncate_to_into_a_closed_segment(open_log: OpenLog, log_dir: Path,
                                          read_all: ReadAll) -> None:
    log = open_log(SMALL)
    for i in range(100):
        log.append(b"x" * 100, timestamp=i)
    log.truncate_to(40)
    assert log.segment_base_offsets == [0, 32]
    assert not (log_dir / "00000000000000000064.log").exists()
    assert log.end_offset == 40
    assert log.max_timestamp == TimestampAndOffset(39, 39)
    for _ in range(30):
        log.append(b"y" * 100)
    assert log.segment_base_offsets == [0, 32, 64]
    log.truncate_to(32)
    assert log.segment_base_offsets == [0, 32]
    assert log.end_offset == 32
    log.close()
    log = open_log(SMALL)
    assert log.end_offset == 32
    assert len(read_all(log)) == 32


def test_truncate_to_rejects_offsets_inside_entries_or_out_of_range(open_log: OpenLog) -> None:
    log = open_log(SMALL)
    log.append(b"a", count=5)
    with pytest.raises(StorageError, match="inside the entry"):
        log.truncate_to(3)
    with pytest.raises(OffsetOutOfRange):
        log.truncate_to(6)
    log.truncate_to(5)  # the end: nothing to do
    log.truncate_to(0)
    assert (log.start_offset, log.end_offset) == (0, 0)


def test_delete_before_persists_across_reopen(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log(SMALL)
    for _ in range(100):
        log.append(b"x" * 100)
    log.delete_before(70)
    assert log.start_offset == 70
    assert log.segment_base_offsets == [64, 96]
    assert not (log_dir / "00000000000000000032.log").exists()
    with pytest.raises(OffsetOutOfRange):
        log.delete_before(101)
    log.delete_before(50)  # never moves back
    assert log.start_offset == 70
    log.close()
    log = open_log(SMALL)
    assert log.start_offset == 70
    assert log.read(70, 100)[0].offset == 70


def test_delete_before_keeps_the_active_segment(open_log: OpenLog) -> None:
    log = open_log(SMALL)
    for _ in range(40):
        log.append(b"x" * 100)
    log.delete_before(40)
    assert log.segment_base_offsets == [32]
    assert log.read(40, 100) == []
    assert log.append(b"more") == 40


def test_retention_by_bytes_deletes_oldest_closed_segments(open_log: OpenLog) -> None:
    log = open_log(LogConfig(segment_bytes=4096, retention_bytes=10_000))
    for _ in range(100):
        log.append(b"x" * 100)
    assert log.size_bytes == 12_800
    assert log.apply_retention() == 4096
    assert log.size_bytes <= 10_000
    assert log.segment_base_offsets == [32, 64, 96]
    assert log.start_offset == 32
    assert log.apply_retention() == 0


def test_retention_by_time_uses_newest_timestamp_of_segment(open_log: OpenLog) -> None:
    log = open_log(LogConfig(segment_bytes=4096, retention_ms=1000))
    for i in range(100):
        log.append(b"x" * 100, timestamp=1000 + i * 10)
    # Segment maxima: 1310, 1630, 1950, 1990 (active).
    assert log.apply_retention(now_ms=2310) == 0
    assert log.apply_retention(now_ms=2311) == 4096
    assert log.apply_retention(now_ms=10**9) == 2 * 4096
    assert log.segment_base_offsets == [96]  # the active segment always stays
    assert log.start_offset == 96


def test_fsync_always_syncs_inside_every_append(open_log: OpenLog, log_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(LogConfig(fsync_always=True))
    synced: list[str] = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    log.append(b"a")
    assert synced.count("00000000000000000000.log") == 1
    assert not log.needs_flush
    log.append(b"b", count=3)
    assert synced.count("00000000000000000000.log") == 2
    log.append_many([b"c", b"d"])
    assert synced.count("00000000000000000000.log") == 3
    assert not log.needs_flush


def test_flush_messages_counts_entries(open_log: OpenLog) -> None:
    log = open_log(LogConfig(flush_messages=3))
    log.append(b"a")
    log.append(b"b")
    assert log.unflushed_entries == 2
    assert log.needs_flush
    log.append(b"c")
    assert log.unflushed_entries == 0
    log.append_many([b"d"] * 5)
    assert log.unflushed_entries == 0
    log.append(b"e")
    assert log.unflushed_entries == 1


def test_flush_writes_checkpoint_with_recovery_point(open_log: OpenLog, log_dir: Path) -> None:
    log = open_log(SMALL)
    log.append(b"a")
    # A new log at offset 0 has none yet (recovery of an empty segment 0 needs none).
    assert not (log_dir / "checkpoint").exists()
    log.flush()
    before = (log_dir / "checkpoint").read_bytes()
    log.append(b"b")
    log.flush()
    assert (log_dir / "checkpoint").read_bytes() != before
    assert not log.needs_flush
    log.flush()  # nothing dirty: a no-op


async def test_flush_sync_can_run_in_a_thread(open_log: OpenLog) -> None:
    log = open_log(SMALL)
    for _ in range(10):
        log.append(b"x" * 100)
    ticket = log.begin_flush()
    assert ticket is not None
    # Appends and a roll while the sync runs must not be lost from the count.
    sync = asyncio.get_running_loop().run_in_executor(None, ticket.sync)
    for _ in range(40):
        log.append(b"y" * 100)
    await sync
    log.complete_flush(ticket)
    # The ticket covered the first 10; the roll's own background sync covers 32 once
    # it has finished, which may or may not have happened yet.
    assert log.unflushed_entries in (40, 50 - 32)
    log.flush()
    assert log.unflushed_entries == 0


def test_truncate_during_flush_does_not_advance_recovery_point(open_log: OpenLog) -> None:
    log = open_log(SMALL)
    for _ in range(10):
        log.append(b"x" * 100)
    ticket = log.begin_flush()
    assert ticket is not None
    log.truncate_to(5)
    ticket.sync()
    log.complete_flush(ticket)
    log.append(b"after")
    log.close()
    log = open_log(SMALL)
    assert log.end_offset == 6


def test_reopen_after_clean_close_gives_identical_reads(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor
) -> None:
    log = open_log(SMALL)
    for i in range(300):
        log.append(payload_for(i), count=1 + i % 4, timestamp=i * 3 % 101)
    log.delete_before(100)
    before = read_all(log)
    max_ts = log.max_timestamp
    log.close()
    for name in os.listdir(log_dir):
        if name.endswith(".log"):
            # Clean close leaves every file at its used size, no pre-allocated tail.
            assert (log_dir / name).stat().st_size <= 4096
    log = open_log(SMALL)
    assert read_all(log) == before
    assert log.max_timestamp == max_ts
    assert log.start_offset == 100
    assert log.append(b"next") == before[-1][0] + before[-1][1]


def test_deleted_segment_with_live_slice_is_retired_then_released(open_log: OpenLog,
                                                                  log_dir: Path) -> None:
    log = open_log(SMALL)
    for i in range(100):
        log.append(bytes([i]) * 100)
    held = log.read(3, 100)[0].payload  # e.g. queued in a transport
    log.delete_before(64)
    assert not (log_dir / "00000000000000000000.log").exists()
    assert log.retired_segments == 1  # segment 0 waits; segment 32 closed at once
    assert bytes(held) == bytes([3]) * 100
    assert log.release_retired() == 1
    del held
    gc.collect()
    assert log.release_retired() == 0


def test_close_with_live_slice_does_not_raise(open_log: OpenLog) -> None:
    log = open_log(SMALL)
    log.append(b"kept alive")
    held = log.read(0, 100)[0].payload
    log.close()
    assert bytes(held) == b"kept alive"
    with pytest.raises(StorageError, match="closed"):
        log.append(b"x")


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        LogConfig(segment_bytes=HEADER_SIZE - 1)
    with pytest.raises(ValueError):
        LogConfig(segment_bytes=1 << 32)
    with pytest.raises(ValueError):
        LogConfig(flush_messages=0)
    with pytest.raises(ValueError):
        LogConfig(retention_ms=-1)


def test_preallocate_off_grows_the_file(open_log: OpenLog, log_dir: Path,
                                        payload_for: PayloadFor, read_all: ReadAll) -> None:
    log = open_log(LogConfig(segment_bytes=8 << 20, preallocate=False))
    assert (log_dir / "00000000000000000000.log").stat().st_size == 0
    for i in range(3000):
        log.append(payload_for(i, 1000))
    size = (log_dir / "00000000000000000000.log").stat().st_size
    assert 3000 * 1028 <= size < 8 << 20
    records = read_all(log)
    assert len(records) == 3000
    assert all(r[3] == payload_for(r[0], 1000) for r in records)


def checkpoint_recovery_point(log_dir: Path) -> tuple[int, int, int]:
    # On-disk layout: magic, version, start offset, recovery point (3 x u64), crc.
    _magic, _version, _start, *rp = struct.unpack_from("<4sHQQQQ", (log_dir / "checkpoint")
                                                       .read_bytes())
    return tuple(rp)  # type: ignore[return-value]


class ControlledSyncs:
    """Stands in for the background fdatasync so a test decides when it finishes."""

    def __init__(self) -> None:
        self.pending: list[tuple[Future[None], tuple[int, ...]]] = []

    def __call__(self, fds: tuple[int, ...]) -> Future[None]:
        future: Future[None] = Future()
        self.pending.append((future, fds))
        return future

    def finish(self, error: OSError | None = None) -> None:
        for future, fds in self.pending:
            for fd in fds:
                os.close(fd)
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
        self.pending.clear()


@pytest.fixture
def controlled_syncs(monkeypatch: pytest.MonkeyPatch) -> ControlledSyncs:
    syncs = ControlledSyncs()
    monkeypatch.setattr("portask.storage.log._background_sync", syncs)
    return syncs


def test_roll_syncs_in_background_and_checkpoint_waits_for_it(
    open_log: OpenLog, log_dir: Path, controlled_syncs: ControlledSyncs
) -> None:
    log = open_log(SMALL)
    for _ in range(33):
        log.append(b"x" * 100)  # the 33rd rolls
    assert len(controlled_syncs.pending) == 1
    assert (log_dir / "00000000000000000000.log").stat().st_size == 4096  # trimmed at once
    # No checkpoint past offset 0 until the rolled segment's sync has finished (a new
    # log at 0 has none at all).
    assert not (log_dir / "checkpoint").exists()
    assert log.needs_flush
    controlled_syncs.finish()
    ticket = log.begin_flush()  # any later call records the finished sync
    assert ticket is not None
    ticket.discard()
    assert checkpoint_recovery_point(log_dir) == (32, 0, 32)
    assert log.unflushed_entries == 1


def test_flush_ticket_waits_for_pending_roll_sync(
    open_log: OpenLog, log_dir: Path, controlled_syncs: ControlledSyncs
) -> None:
    log = open_log(SMALL)
    for _ in range(40):
        log.append(b"x" * 100)
    ticket = log.begin_flush()
    assert ticket is not None
    finisher = threading.Timer(0.05, controlled_syncs.finish)
    finisher.start()
    ticket.sync()  # returns only once the rolled segment is synced too
    finisher.join()
    log.complete_flush(ticket)
    assert not log.needs_flush
    assert checkpoint_recovery_point(log_dir) == (32, 8 * 128, 40)


def test_failed_background_sync_surfaces_on_flush(
    open_log: OpenLog, controlled_syncs: ControlledSyncs
) -> None:
    log = open_log(SMALL)
    for _ in range(33):
        log.append(b"x" * 100)
    controlled_syncs.finish(OSError(errno.EIO, "I/O error"))
    with pytest.raises(OSError, match="I/O error"):
        log.flush()
    log.flush()  # reported once; the log goes on


def test_rolled_segment_is_really_fdatasynced(open_log: OpenLog, log_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    log = open_log(SMALL)
    for _ in range(33):
        log.append(b"x" * 100)
    log.flush()
    assert str(log_dir / "00000000000000000000.log") in synced
    assert str(log_dir / "00000000000000000000.index") in synced


def test_rewrite_closed_keeps_offsets_and_survives_reopen(tmp_path: Path) -> None:
    from portask.storage import Log, LogConfig

    config = LogConfig(segment_bytes=4096, index_interval_bytes=256)
    log = Log.open(tmp_path / "rw", config)
    for i in range(60):
        log.append(b"entry-%03d-" % i + b"x" * 100, count=2, timestamp=1000 + i)
    assert log.segment_count > 2
    held = log.read(0, 200)[0].payload  # a live slice of the first segment's old map

    def shrink(entry):  # type: ignore[no-untyped-def]
        return bytes(entry.payload[:10]) if (entry.offset // 2) % 3 else None

    before = log.size_bytes
    reclaimed = log.rewrite_closed(shrink)
    assert reclaimed > 0 and log.size_bytes == before - reclaimed
    assert bytes(held[:10]) == b"entry-000-"  # the old map is still readable

    def check(opened: Log) -> None:
        got = opened.read(0, 1 << 20)
        assert [(e.offset, e.count, e.timestamp) for e in got] == [
            (2 * i, 2, 1000 + i) for i in range(60)
        ]
        active_base = opened.segment_base_offsets[-1]
        for e in got:
            i = e.offset // 2
            full = b"entry-%03d-" % i + b"x" * 100
            changed = e.offset < active_base and i % 3
            assert bytes(e.payload) == (full[:10] if changed else full)

    check(log)
    del held
    log.close()
    reopened = Log.open(tmp_path / "rw", config)
    check(reopened)
    reopened.close()


def test_entries_from_an_offset_inside_an_entry_start_with_that_entry(open_log: OpenLog) -> None:
    """A Kafka batch spans several offsets: a reader from the middle of one gets it."""
    log = open_log(SMALL)
    log.append(b"a", count=3)  # offsets 0-2
    log.append(b"b", count=2)  # offsets 3-4
    log.append(b"c")  # offset 5
    got = [(e.offset, bytes(e.payload)) for e in log.entries(1, log.end_offset, 4096)]
    assert got == [(0, b"a"), (3, b"b"), (5, b"c")]
    got = [(e.offset, bytes(e.payload)) for e in log.entries(5, log.end_offset, 1)]
    assert got == [(5, b"c")]
