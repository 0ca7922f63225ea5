"""Recovery on open: which records survive each kind of damage, and what is reported.

A "crash" here is ``del log`` without close(): nothing is flushed or trimmed, the page
cache keeps what was written, exactly as after kill -9.
"""

from __future__ import annotations

import gc
import logging
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from portask.storage import CorruptLogError, Log, LogConfig, OffsetOutOfRange
from portask.storage.segment import HEADER_SIZE

OpenLog = Callable[..., Log]
ReadAll = Callable[[Log], list[tuple[int, int, int, bytes]]]
PayloadFor = Callable[..., bytes]

CONFIG = LogConfig(segment_bytes=8192, index_interval_bytes=512, segment_ms=None)
ENTRY = HEADER_SIZE + 100  # every record in these tests: 100-byte payload
PER_SEGMENT = 8192 // ENTRY  # 64


def seg_path(log_dir: Path, base: int, suffix: str = ".log") -> Path:
    return log_dir / f"{base:020d}{suffix}"


def write_records(log: Log, payload_for: PayloadFor, n: int) -> None:
    for i in range(n):
        assert log.append(payload_for(log.end_offset, 100), timestamp=i) == log.end_offset - 1


def assert_survivors(log: Log, read_all: ReadAll, payload_for: PayloadFor, n: int) -> None:
    records = read_all(log)
    assert [r[0] for r in records] == list(range(n))
    assert all(r[3] == payload_for(r[0], 100) for r in records)
    assert log.end_offset == n


def storage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "portask.storage" and r.levelno >= logging.WARNING]


@pytest.fixture(autouse=True)
def _capture_storage_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="portask.storage")


def test_zero_filled_preallocated_tail_keeps_everything_silently(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 150)  # two closed segments and an active one
    del log
    gc.collect()
    assert seg_path(log_dir, 128).stat().st_size == 8192  # still pre-allocated
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 150)
    assert storage_warnings(caplog) == []
    assert log.append(payload_for(150, 100)) == 150


def test_truncated_last_record_is_dropped_alone(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 150)
    last_pos = (149 - 128) * ENTRY
    del log
    gc.collect()
    with seg_path(log_dir, 128).open("r+b") as f:
        # The write of record 149 stopped half way: its second half never landed.
        f.seek(last_pos + ENTRY // 2)
        f.write(bytes(ENTRY - ENTRY // 2))
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 149)
    [warning] = storage_warnings(caplog)
    assert str(log_dir) in warning
    assert "00000000000000000128.log" in warning
    assert f"position {last_pos}" in warning
    assert f"dropped {ENTRY // 2} bytes" in warning
    assert "offset 149" in warning
    assert "CRC" in warning
    # The dropped bytes are zeros now: the next append and a reopen agree.
    assert log.append(b"new") == 149
    log.close()
    log = open_log(CONFIG)
    assert read_all(log)[-1][3] == b"new"


def test_file_cut_inside_a_record_of_a_closed_last_segment(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 100)
    log.close()
    os.truncate(seg_path(log_dir, 64), (99 - 64) * ENTRY + 50)
    os.unlink(log_dir / "checkpoint")
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 99)
    [warning] = storage_warnings(caplog)[-1:]
    assert "runs past the end of the file" in warning


def test_garbage_after_last_good_record_is_dropped(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 80)
    end = (80 - 64) * ENTRY
    del log
    gc.collect()
    with seg_path(log_dir, 64).open("r+b") as f:
        f.seek(end)
        f.write(b"\xde\xad\xbe\xef" * 100)
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 80)
    [warning] = storage_warnings(caplog)
    assert f"position {end}" in warning
    assert "dropped 400 bytes" in warning
    assert seg_path(log_dir, 64).read_bytes()[end:] == bytes(8192 - end)


def test_zero_length_followed_by_junk_is_reported(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 10)
    del log
    gc.collect()
    with seg_path(log_dir, 0).open("r+b") as f:
        f.seek(10 * ENTRY + 4)  # length stays 0, the rest is not
        f.write(b"junk")
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 10)
    [warning] = storage_warnings(caplog)
    assert "dropped 8 bytes" in warning


def test_missing_index_is_rebuilt_identically(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 150)
    log.close()
    originals = {p: p.read_bytes() for p in log_dir.glob("*.index")}
    for p in originals:
        p.unlink()
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 150)
    log.close()
    assert {p: p.read_bytes() for p in log_dir.glob("*.index")} == originals
    assert storage_warnings(caplog) == []


@pytest.mark.parametrize("damage", ["garbage", "past_end", "not_a_boundary", "odd_size"])
def test_corrupt_index_is_rebuilt(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor, damage: str
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 150)
    log.close()
    path = seg_path(log_dir, 64, ".index")
    original = path.read_bytes()
    with path.open("r+b") as f:
        if damage == "garbage":
            f.write(os.urandom(len(original)))
        elif damage == "past_end":
            f.seek(len(original) - 16)
            f.write(struct.pack("<IIq", 63, 9000, 0))
        elif damage == "not_a_boundary":
            f.seek(len(original) - 16)
            rel, pos, ts = struct.unpack("<IIq", original[-16:])
            f.write(struct.pack("<IIq", rel, pos + 1, ts))
        else:
            f.truncate(len(original) - 5)
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 150)
    log.close()
    assert path.read_bytes() == original


def test_index_entries_past_a_torn_tail_are_trimmed(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 60)
    del log
    gc.collect()
    with seg_path(log_dir, 0).open("r+b") as f:
        f.seek(20 * ENTRY + HEADER_SIZE)
        f.write(b"X")  # corrupt record 20: 20..59 go, with the index entries past it
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 20)
    write_records(log, payload_for, 40)
    log.close()
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 60)


@pytest.mark.parametrize("checkpoint", ["corrupt", "missing"])
def test_without_a_good_checkpoint_everything_is_verified(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor,
    caplog: pytest.LogCaptureFixture, checkpoint: str,
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 40)
    log.flush()  # the checkpoint now vouches for all 40 records
    del log
    gc.collect()
    with seg_path(log_dir, 0).open("r+b") as f:
        f.seek(30 * ENTRY + HEADER_SIZE + 7)
        f.write(b"?")  # a bit flip in synced data, which a checkpoint trusts

    trusting = open_log(CONFIG)
    assert trusting.end_offset == 40  # trusted: not CRC-checked on open
    del trusting
    gc.collect()

    if checkpoint == "corrupt":
        data = bytearray((log_dir / "checkpoint").read_bytes())
        data[10] ^= 0xFF
        (log_dir / "checkpoint").write_bytes(bytes(data))
    else:
        (log_dir / "checkpoint").unlink()
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 30)
    warnings = storage_warnings(caplog)
    assert any("CRC mismatch" in w for w in warnings)
    assert ("checkpoint is unreadable" in warnings[0]) == (checkpoint == "corrupt")


def test_unflushed_records_after_checkpoint_are_verified(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 20)
    log.flush()
    write_records(log, payload_for, 20)
    del log
    gc.collect()
    with seg_path(log_dir, 0).open("r+b") as f:
        f.seek(25 * ENTRY + HEADER_SIZE + 7)
        f.write(b"?")
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 25)


def test_torn_non_last_segment_drops_later_segments(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 200)
    log.close()
    with seg_path(log_dir, 64).open("r+b") as f:
        f.seek(10 * ENTRY + 4)
        f.write(b"\0\0\0\0")  # CRC of record 74 broken
    os.unlink(log_dir / "checkpoint")
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 74)
    assert log.segment_base_offsets == [0, 64]
    assert not seg_path(log_dir, 128).exists()
    assert not seg_path(log_dir, 192, ".index").exists()
    [warning] = storage_warnings(caplog)[-1:]
    assert "2 later segment(s)" in warning


def test_segment_that_does_not_follow_is_dropped(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 100)
    log.close()
    seg_path(log_dir, 64).rename(seg_path(log_dir, 70))
    seg_path(log_dir, 64, ".index").unlink()
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 64)
    [warning] = storage_warnings(caplog)
    assert "does not follow" in warning


def test_bad_segment_file_name_is_fatal(open_log: OpenLog, log_dir: Path,
                                        payload_for: PayloadFor) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 3)
    log.close()
    (log_dir / "123.log").write_bytes(b"")
    with pytest.raises(CorruptLogError) as raised:
        Log.open(log_dir, CONFIG)
    message = str(raised.value)
    assert "123.log" in message and "20-digit" in message and "\n" not in message


def test_invalid_first_entry_of_non_last_segment_is_fatal(
    open_log: OpenLog, log_dir: Path, payload_for: PayloadFor
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 100)
    log.close()
    with seg_path(log_dir, 0).open("r+b") as f:
        f.write(b"\xff" * 8)
    with pytest.raises(CorruptLogError, match=r"00000000000000000000\.log: position 0"):
        Log.open(log_dir, CONFIG)


def test_crash_before_rolled_segment_was_trimmed(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 100)
    del log
    gc.collect()
    os.truncate(seg_path(log_dir, 0), 8192 * 2)  # zeros, as if never trimmed
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 100)
    assert seg_path(log_dir, 0).stat().st_size == 64 * ENTRY
    assert storage_warnings(caplog) == []


def test_crash_right_after_creating_a_segment(
    open_log: OpenLog, log_dir: Path, read_all: ReadAll, payload_for: PayloadFor
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 64)
    log.close()
    assert log.segment_base_offsets == [0]  # full, but the roll waits for an append
    with seg_path(log_dir, 64).open("wb") as f:
        f.truncate(8192)  # the roll created the file, then died
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 64)
    assert log.segment_base_offsets == [0, 64]
    assert log.append(b"x") == 64


def test_truncated_records_do_not_come_back_after_a_crash(
    open_log: OpenLog, read_all: ReadAll, payload_for: PayloadFor
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 150)
    log.flush()
    log.truncate_to(100)
    del log
    gc.collect()
    log = open_log(CONFIG)
    assert_survivors(log, read_all, payload_for, 100)


def test_start_offset_beyond_lost_data_is_clamped(
    open_log: OpenLog, log_dir: Path, payload_for: PayloadFor
) -> None:
    log = open_log(CONFIG)
    write_records(log, payload_for, 30)
    log.delete_before(30)
    del log
    gc.collect()
    os.truncate(seg_path(log_dir, 0), 20 * ENTRY)  # a machine crash lost the tail
    log = open_log(CONFIG)
    assert (log.start_offset, log.end_offset) == (20, 20)
    with pytest.raises(OffsetOutOfRange):
        log.read(19, 100)


def test_reopen_after_clean_close_scans_almost_nothing(
    open_log: OpenLog, log_dir: Path, payload_for: PayloadFor
) -> None:
    big = LogConfig(segment_bytes=1 << 20, segment_ms=None)
    log = open_log(big)
    payload = os.urandom(1000)
    for _ in range(16):
        log.append_many([payload] * 1000)
    log.close()
    started = time.perf_counter()
    log = open_log(big)
    elapsed = time.perf_counter() - started
    assert log.end_offset == 16_000
    assert elapsed < 0.5, elapsed  # typically ~10 ms; generous for a busy machine
