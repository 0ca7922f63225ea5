"""A full disk: a failed append leaves the log as it was, and appends resume with space.

The disk is a real tmpfs the test mounts (tests/small_filesystem.py): the kernel's own
ENOSPC, short writes included, for data pages and (with few inodes) for the files a
segment roll creates. Only the index write is injected, at the os.pwrite boundary,
because a real file system cannot be made to refuse exactly that 16-byte write.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from portask.storage import Log, LogConfig
from portask.storage import index as index_module
from tests.small_filesystem import fill, mounted_tmpfs, use_every_inode

PAYLOAD = 3000  # not a divisor of the page size: entries straddle pages, writes come up short


def payload(i: int) -> bytes:
    return i.to_bytes(4, "big") * (PAYLOAD // 4)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk", size=2 << 20) as path:
        yield path


def append_until_full(log: Log, start: int = 0) -> tuple[int, OSError]:
    i = start
    while True:
        try:
            assert log.append(payload(i)) == i
        except OSError as exc:
            return i, exc
        i += 1


def segment_files(log_dir: Path) -> list[str]:
    return sorted(p.name for p in log_dir.iterdir() if p.suffix in (".log", ".index"))


def assert_reads_back(log: Log, count: int) -> None:
    got = [(r.offset, bytes(r.payload)) for r in log.read(0, 1 << 30)]
    assert got == [(i, payload(i)) for i in range(count)]


def assert_nothing_after_the_data(log_dir: Path, log: Log) -> None:
    """No fragment of a failed entry is left where recovery would look for the next one."""
    seg = Path(log_dir) / f"{log.segment_base_offsets[-1]:020d}.log"
    active_size = log.size_bytes - sum(
        (Path(log_dir) / f"{base:020d}.log").stat().st_size
        for base in log.segment_base_offsets[:-1]
    )
    with open(seg, "rb") as f:
        f.seek(active_size)
        assert not f.read(64 << 10).strip(b"\0")


def test_a_full_disk_fails_appends_cleanly_and_they_resume_when_space_returns(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_dir = small_disk / "log"
    config = LogConfig(segment_bytes=256 << 10, index_interval_bytes=4096)
    log = Log.open(log_dir, config)
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\xbb" * (256 << 10))
    stored, exc = append_until_full(log)
    assert exc.errno == errno.ENOSPC
    assert stored > 100 and log.segment_count > 1  # rolled on the way to full
    fill(small_disk / "crumbs")  # the last free pages too, whatever the last append left
    for _ in range(3):
        with pytest.raises(OSError):
            log.append(payload(stored))
        assert log.end_offset == stored
    assert_reads_back(log, stored)
    assert_nothing_after_the_data(log_dir, log)

    ballast.unlink()
    (small_disk / "crumbs").unlink()
    assert log.append(payload(stored)) == stored
    assert log.append(payload(stored + 1)) == stored + 1
    assert_reads_back(log, stored + 2)
    log.close()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="portask.storage"):
        reopened = Log.open(log_dir, config)
    try:
        assert not caplog.records  # nothing torn to cut
        assert reopened.end_offset == stored + 2
        assert_reads_back(reopened, stored + 2)
    finally:
        reopened.close()


def test_a_crash_after_a_failed_append_recovers_exactly_the_stored_entries(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_dir = small_disk / "log"
    config = LogConfig(segment_bytes=1 << 20, index_interval_bytes=4096)
    log = Log.open(log_dir, config)
    stored, _ = append_until_full(log)
    del log  # kill -9: no flush, no close; what is on disk is what recovery sees
    (small_disk / "room").write_bytes(b"")  # nothing freed: recovery runs on a full disk
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="portask.storage"):
        reopened = Log.open(log_dir, config)
    try:
        assert not [r for r in caplog.records if "unreadable" in r.getMessage()]
        assert reopened.end_offset == stored
        assert_reads_back(reopened, stored)
    finally:
        reopened.close()


def test_a_roll_that_cannot_create_its_files_leaves_the_active_segment_taking_appends(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", size=8 << 20, inodes=64) as disk:
        log_dir = disk / "log"
        config = LogConfig(segment_bytes=64 << 10, index_interval_bytes=4096)
        log = Log.open(log_dir, config)
        try:
            for i in range(10):
                log.append(payload(i))
            spare = use_every_inode(disk)
            # The active segment fills up; the roll needs a new .log and .index.
            stored, exc = append_until_full(log, start=10)
            assert exc.errno == errno.ENOSPC
            assert log.segment_count == 1
            assert segment_files(log_dir) == ["00000000000000000000.index",
                                              "00000000000000000000.log"]
            # One inode: the .log can be created, the .index cannot. The half-made
            # segment is removed again, so no stray file awaits recovery.
            spare.pop().unlink()
            with pytest.raises(OSError):
                log.append(payload(stored))
            assert segment_files(log_dir) == ["00000000000000000000.index",
                                              "00000000000000000000.log"]
            assert_reads_back(log, stored)

            for path in spare[:4]:
                path.unlink()
            assert log.append(payload(stored)) == stored
            assert log.segment_count == 2
            assert_reads_back(log, stored + 1)
        finally:
            log.close()
        reopened = Log.open(log_dir, config)
        try:
            assert_reads_back(reopened, stored + 1)
        finally:
            reopened.close()


def test_a_failed_index_write_skips_the_index_point_and_keeps_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Log.open(tmp_path / "log", LogConfig(index_interval_bytes=0))
    try:
        for i in range(5):
            log.append(payload(i))
        real_pwrite = os.pwrite
        index_fd = log._active.index._fd  # type: ignore[union-attr]

        def pwrite(fd: int, data: bytes, offset: int) -> int:
            if fd == index_fd:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(index_module.os, "pwrite", pwrite)
        assert log.append(payload(5)) == 5
        assert log.append_many([payload(6), payload(7)]) == 6
        monkeypatch.setattr(index_module.os, "pwrite", real_pwrite)
        assert log.append(payload(8)) == 8
        assert_reads_back(log, 9)
        assert [r.offset for r in log.read(6, 1)] == [6]
    finally:
        log.close()
