"""Storage throughput and recovery time. Run with `make bench`.

Targets on a 2-core machine: append >= 1 GB/s with 64 KiB records, >= 500k records/s
with 1 KiB records through append_many, zero-copy reads of 1 MiB ranges >= 5 GB/s,
recovery of a 1 GiB log with a torn tail < 1 s. Files live under tmp_path, on the
real disk. Figures land in each benchmark's extra_info.

The write_strategy benchmarks compare the two ways of getting an entry into a sparse
pre-allocated segment: copying into a shared writable map (what the design first
proposed) and pwrite while reads use a read-only map (what segment.py does).
"""

from __future__ import annotations

import gc
import logging
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from crc32c import crc32c

from portask.storage import Log, LogConfig

MIB = 1 << 20
GIB = 1 << 30
RECORD_64K = os.urandom(64 * 1024)
RECORD_1K = os.urandom(1024)
HEADER = struct.Struct("<IIQIq")
TAIL = struct.Struct("<QIq")
LENGTH_CRC = struct.Struct("<II")
CRC = struct.Struct("<I")
MADV_POPULATE_WRITE = 23  # Linux >= 5.14; not in Python 3.11's mmap module


def record_throughput(benchmark: Any, *, nbytes: int = 0, records: int = 0) -> None:
    """Put throughput from the best and the mean round into extra_info."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    for name, seconds in (("best", stats.stats.min), ("mean", stats.stats.mean)):
        if nbytes:
            benchmark.extra_info[f"GB/s ({name})"] = round(nbytes / seconds / 1e9, 3)
        if records:
            benchmark.extra_info[f"records/s ({name})"] = round(records / seconds)


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Iterator[Callable[[], Path]]:
    counter = iter(range(10**6))

    def make() -> Path:
        return tmp_path / f"log{next(counter)}"

    yield make


# -- appends --------------------------------------------------------------------


def test_append_64k_records(benchmark: Any, tmp_path: Path) -> None:
    """1 GiB over 4 rounds, default config: includes 8 rolls, each an fdatasync."""
    log = Log.open(tmp_path / "log", LogConfig())
    n = 4096  # 256 MiB per round
    append = log.append

    def run() -> None:
        for _ in range(n):
            append(RECORD_64K)

    benchmark.pedantic(run, rounds=4, iterations=1)
    record_throughput(benchmark, nbytes=n * len(RECORD_64K), records=n)
    assert log.end_offset == 4 * n
    log.close()


def test_append_many_1k_records(benchmark: Any, tmp_path: Path) -> None:
    log = Log.open(tmp_path / "log", LogConfig())
    batch = [RECORD_1K] * 1000
    batches = 200  # 200k records, ~206 MB per round
    append_many = log.append_many

    def run() -> None:
        for _ in range(batches):
            append_many(batch)

    benchmark.pedantic(run, rounds=5, iterations=1)
    record_throughput(benchmark, nbytes=batches * 1000 * 1024, records=batches * 1000)
    log.close()


def test_append_1k_records_one_by_one(benchmark: Any, tmp_path: Path) -> None:
    """For comparison with append_many: the per-call cost of append()."""
    log = Log.open(tmp_path / "log", LogConfig())
    n = 100_000
    append = log.append

    def run() -> None:
        for _ in range(n):
            append(RECORD_1K)

    benchmark.pedantic(run, rounds=5, iterations=1)
    record_throughput(benchmark, nbytes=n * 1024, records=n)
    log.close()


# -- reads ----------------------------------------------------------------------


@pytest.mark.parametrize("record", [RECORD_64K, RECORD_1K], ids=["64k", "1k"])
def test_read_1mib_ranges_warm(benchmark: Any, tmp_path: Path, record: bytes) -> None:
    log = Log.open(tmp_path / "log", LogConfig())
    total = 96 * MIB
    log.append_many([record] * (total // len(record)))
    end = log.end_offset
    read = log.read

    def run() -> int:
        offset = taken = 0
        while offset < end:
            records = read(offset, MIB)
            last = records[-1]
            offset = last.offset + last.count
            taken += len(records)
        return taken

    assert run() == end  # also warms the page cache and the map
    benchmark.pedantic(run, rounds=10, iterations=1)
    record_throughput(benchmark, nbytes=end * len(record), records=end)
    log.close()


# -- recovery -------------------------------------------------------------------


@pytest.fixture(scope="module")
def gib_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("gib") / "log"
    log = Log.open(directory, LogConfig())
    log.append_many([RECORD_64K] * (GIB // len(RECORD_64K)))
    log.close()
    return directory


def test_recovery_of_1gib_log_with_torn_tail(benchmark: Any, gib_log: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    config = LogConfig()
    logs: list[Log] = []
    expected_ends: list[int] = []
    tail = 8 * MIB

    def crash_with_torn_tail() -> None:
        log = logs.pop() if logs else Log.open(gib_log, config)
        log.flush()  # the checkpoint now vouches for everything so far
        log.append_many([RECORD_64K] * (tail // len(RECORD_64K)))
        bases = log.segment_base_offsets
        closed = sum(os.path.getsize(gib_log / f"{b:020d}.log") for b in bases[:-1])
        active_end = log.size_bytes - closed
        active = gib_log / f"{bases[-1]:020d}.log"
        expected_ends.append(log.end_offset - 1)
        del log
        gc.collect()  # kill -9: no flush, no trim, the pre-allocated tail stays
        # Tear the last entry: its second half never reached the page cache.
        with active.open("r+b") as f:
            f.seek(active_end - len(RECORD_64K) // 2)
            f.write(bytes(len(RECORD_64K) // 2))

    def recover() -> None:
        logs.append(Log.open(gib_log, config))

    with caplog.at_level(logging.WARNING, logger="portask.storage"):
        benchmark.pedantic(recover, setup=crash_with_torn_tail, rounds=5, iterations=1)
    log = logs.pop()
    assert log.end_offset == expected_ends[-1]
    assert log.size_bytes > GIB
    assert sum("CRC mismatch" in r.getMessage() for r in caplog.records) == 5
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["recovery ms (best)"] = round(stats.stats.min * 1000, 1)
        benchmark.extra_info["recovery ms (max)"] = round(stats.stats.max * 1000, 1)
        assert stats.stats.max < 1.0
    log.close()


def test_reopen_of_cleanly_closed_1gib_log(benchmark: Any, gib_log: Path) -> None:
    config = LogConfig()

    def reopen() -> None:
        Log.open(gib_log, config).close()

    benchmark.pedantic(reopen, rounds=5, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["open+close ms (best)"] = round(stats.stats.min * 1000, 1)
        assert stats.stats.max < 1.0


# -- write strategies -----------------------------------------------------------
# Same entry framing as segment.py, written two (three) ways into a fresh sparse file.

STRATEGY_FILE_BYTES = 256 * MIB


class SparseSegmentFile:
    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self.fd, STRATEGY_FILE_BYTES)
        self.map = mmap.mmap(self.fd, STRATEGY_FILE_BYTES)
        self.view = memoryview(self.map)

    def close(self) -> None:
        os.fdatasync(self.fd)  # outside the timing: leave no dirty pages for the next round
        self.view.release()
        self.map.close()
        os.close(self.fd)


def write_mmap_copy(seg: SparseSegmentFile, payloads: list[bytes], populate: bool) -> int:
    m, view = seg.map, seg.view
    pack_into, crc_into = HEADER.pack_into, CRC.pack_into
    pos = populated = 0
    for offset, p in enumerate(payloads):
        n = len(p)
        end = pos + 28 + n
        if populate and end > populated:
            step = min(4 * MIB, STRATEGY_FILE_BYTES - populated)
            m.madvise(MADV_POPULATE_WRITE, populated, step)
            populated += step
        pack_into(m, pos, 24 + n, 0, offset, 1, 0)
        m[pos + 28:end] = p
        crc_into(m, pos + 4, crc32c(view[pos + 8:end]))
        pos = end
    return pos


def write_pwrite(seg: SparseSegmentFile, payloads: list[bytes], batch: int) -> int:
    fd = seg.fd
    pack_tail, pack_head = TAIL.pack, LENGTH_CRC.pack
    pos = offset = 0
    for i in range(0, len(payloads), batch):
        parts: list[bytes] = []
        for p in payloads[i:i + batch]:
            tail = pack_tail(offset, 1, 0)
            parts += (pack_head(24 + len(p), crc32c(p, crc32c(tail))), tail, p)
            offset += 1
        data = b"".join(parts) if batch > 1 else parts
        written = os.pwrite(fd, data, pos) if batch > 1 else os.pwritev(fd, data, pos)
        pos += written
    return pos


@pytest.mark.parametrize("record", [RECORD_64K, RECORD_1K], ids=["64k", "1k"])
@pytest.mark.parametrize("strategy", ["mmap_copy", "mmap_copy_populate", "pwrite"])
def test_write_strategy(benchmark: Any, fresh_dir: Callable[[], Path], strategy: str,
                        record: bytes) -> None:
    payloads = [record] * ((STRATEGY_FILE_BYTES - MIB) // (len(record) + 28))
    # pwrite gets what segment.py does: one pwritev per append of a big record, one
    # joined write per append_many batch of small ones.
    batch = 1 if len(record) > 4096 else 1000
    files: list[SparseSegmentFile] = []

    def setup() -> tuple[tuple[SparseSegmentFile], dict[str, Any]]:
        for f in files:
            f.close()
        files.clear()
        directory = fresh_dir()
        directory.mkdir()
        files.append(SparseSegmentFile(directory / "segment.log"))
        return (files[0],), {}

    def run(seg: SparseSegmentFile) -> int:
        if strategy == "pwrite":
            return write_pwrite(seg, payloads, batch)
        return write_mmap_copy(seg, payloads, populate=strategy == "mmap_copy_populate")

    benchmark.pedantic(run, setup=setup, rounds=4, iterations=1)
    record_throughput(benchmark, nbytes=len(payloads) * len(record), records=len(payloads))
    for f in files:
        f.close()
