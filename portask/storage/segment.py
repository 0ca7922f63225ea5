# Over 500 lines: one file's appends, reads, recovery scan and trims share its layout and map.
"""One segment of a log: an append-only .log file plus its sparse offset index.

Entry layout in the .log file (little-endian), 28 bytes of header then the payload:

    length      u32  bytes after this field (>= 24); 0 means "no more data"
    crc         u32  CRC-32C of every byte after this field
    base_offset u64  first logical offset of the entry
    count       u32  logical offsets the entry spans (>= 1)
    timestamp   i64  milliseconds, supplied by the caller
    payload

Appends go through ``os.pwritev``/``os.pwrite`` into a sparse, pre-allocated file and
reads return slices of a read-only map of the same file. Writing through the map was
measured slower on sparse files (every first touch of a page is a fault that allocates
a block) and turns a full disk into SIGBUS; see tests/benchmarks/test_storage_bench.py.

Because the file is sparse, a full disk shows at the write that needs a new block
(ENOSPC), not at pre-allocation. A failed append leaves no trace: the bytes a short
write got onto disk are cut again, ``size`` and ``next_offset`` do not move, and the
next append lands where the failed one would have. A failed index write only skips
that index point (the index is sparse anyway); the entry stays.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from pathlib import Path
from typing import NamedTuple

from crc32c import crc32c

from portask.storage import files
from portask.storage.index import OffsetIndex

HEADER = struct.Struct("<IIQIq")
HEADER_SIZE = HEADER.size
# Bytes counted by the length field besides the payload: crc, base_offset, count, ts.
LENGTH_OVERHEAD = HEADER_SIZE - 4
_TAIL = struct.Struct("<QIq")
_LENGTH_CRC = struct.Struct("<II")

# Positions and lengths are u32 on disk.
MAX_SEGMENT_BYTES = 0xFFFFFFFF
MAX_PAYLOAD_BYTES = MAX_SEGMENT_BYTES - HEADER_SIZE
MAX_RELATIVE_OFFSET = 0xFFFFFFFF
NO_TIMESTAMP = -(1 << 63)

# Makes the first append of an empty segment always add an index entry.
_NEVER_INDEXED = -(1 << 62)
_MAX_HINTS = 256
_GROWTH_STEP = 1 << 20

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"


class StorageError(Exception):
    """Base class of everything the storage layer raises on purpose."""


class OffsetOutOfRange(StorageError):
    """The offset is below the log start or above the log end."""


class CorruptLogError(StorageError):
    """A log directory holds something recovery cannot make sense of."""


class LogRecord(NamedTuple):
    """One stored entry; ``payload`` is a zero-copy slice of the segment map."""

    offset: int
    count: int
    timestamp: int
    payload: memoryview


class ScanResult(NamedTuple):
    """Where recovery found the end of a segment, and why it stopped there."""

    end: int
    problem: str | None


def segment_file_name(base_offset: int, suffix: str) -> str:
    return f"{base_offset:020d}{suffix}"


def _write_all(fd: int, parts: list[bytes | memoryview] | tuple[bytes | memoryview, ...],
               position: int, total: int) -> None:
    written = os.pwritev(fd, parts, position)
    if written == total:
        return
    # Short writes on a regular file mean an interrupted or nearly full write; finish
    # it so an OSError (e.g. ENOSPC) is what the caller sees, never a silent tear.
    rest = memoryview(b"".join(parts))[written:]
    while rest:
        n = os.pwrite(fd, rest, position + written)
        if n <= 0:
            raise OSError(f"pwrite wrote {n} bytes")
        written += n
        rest = rest[n:]


def _unlink_quietly(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


class Segment:
    """A .log file and its .index. The log decides when to roll; this class appends,
    reads, recovers and trims one segment."""

    __slots__ = (
        "_fd",
        "_hints",
        "_map",
        "_max_timestamp_offset",
        "_stale_maps",
        "_view",
        "active",
        "base_offset",
        "capacity",
        "created_ms",
        "file_size",
        "index",
        "index_interval",
        "last_index_position",
        "log_path",
        "max_timestamp",
        "next_offset",
        "size",
    )

    def __init__(self, log_path: Path, base_offset: int, fd: int, index: OffsetIndex,
                 index_interval: int) -> None:
        self.log_path = log_path
        self.base_offset = base_offset
        self._fd = fd
        self.index = index
        self.index_interval = index_interval
        self._map: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._stale_maps: list[mmap.mmap] = []
        self._hints: dict[int, int] = {}
        self.file_size = 0
        self.capacity = 0
        self.size = 0
        self.next_offset = base_offset
        self.max_timestamp = NO_TIMESTAMP
        self._max_timestamp_offset: int | None = None
        self.created_ms = 0
        self.last_index_position = _NEVER_INDEXED
        self.active = False

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, base_offset: int, capacity: int, index_max_bytes: int,
               index_interval: int, preallocate: bool) -> Segment:
        """A new, empty, active segment. Stale files of the same name are replaced."""
        log_path = directory / segment_file_name(base_offset, LOG_SUFFIX)
        index_path = directory / segment_file_name(base_offset, INDEX_SUFFIX)
        index_path.unlink(missing_ok=True)
        fd = os.open(log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            index = OffsetIndex.open(index_path, index_max_bytes, new=True)
        except BaseException:
            os.close(fd)
            _unlink_quietly(log_path, index_path)
            raise
        seg = cls(log_path, base_offset, fd, index, index_interval)
        seg.capacity = capacity
        seg.active = True
        if preallocate:
            try:
                # Sparse: instant, and uses no disk space until written.
                os.ftruncate(fd, capacity)
                seg._remap(capacity)
            except BaseException:
                seg.close()
                _unlink_quietly(log_path, index_path)
                raise
        return seg

    @classmethod
    def open(cls, log_path: Path, base_offset: int, index_interval: int,
             index_max_bytes: int) -> Segment:
        """Map an existing segment for recovery; ``recover`` must run before use.

        The index is extended so that recovery can rebuild it; ``seal`` or
        ``activate`` settles its final size.
        """
        fd = os.open(log_path, os.O_RDWR | os.O_CLOEXEC)
        index_path = log_path.with_suffix(INDEX_SUFFIX)
        try:
            index = OffsetIndex.open(index_path, index_max_bytes)
        except BaseException:
            os.close(fd)
            raise
        seg = cls(log_path, base_offset, fd, index, index_interval)
        file_size = os.fstat(fd).st_size
        seg._remap(file_size)
        seg.capacity = file_size
        return seg

    def activate(self, capacity: int, index_max_bytes: int, preallocate: bool) -> None:
        """Make this segment the one that takes appends (after open or truncation)."""
        self.capacity = max(capacity, self.size)
        if preallocate and self.file_size < self.capacity:
            os.ftruncate(self._fd, self.capacity)
            self._remap(self.capacity)
        self.index.activate(index_max_bytes)
        self.active = True

    def seal(self, sync: bool) -> None:
        """Close the segment for appends: sync it, then cut the files to the used size."""
        if sync:
            files.datasync(self._fd)
            self.index.sync()
        # The map stays as it is: nobody reads beyond ``size``, and remapping would
        # have to wait for every live slice.
        os.ftruncate(self._fd, self.size)
        self.index.seal()
        self.file_size = self.size
        self.capacity = self.size
        self.active = False

    def grow(self, capacity: int) -> None:
        """Let an empty active segment take an entry larger than its capacity."""
        self.capacity = max(self.capacity, capacity)
        self._ensure_file_size(self.capacity)

    def sync(self) -> None:
        files.datasync(self._fd)
        self.index.sync()

    def dup_fds(self) -> tuple[int, ...]:
        """Descriptors a flush thread can sync even if the segment is deleted meanwhile."""
        index_fd = self.index.dup_fd_if_dirty()
        log_fd = os.dup(self._fd)
        return (log_fd,) if index_fd is None else (log_fd, index_fd)

    def close(self) -> bool:
        """Release files and maps; False if a live payload slice keeps the map open."""
        self.index.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._view is not None:
            self._view.release()
            self._view = None
        return self.release_maps()

    def delete(self) -> bool:
        """Unlink the files, then close; False if the map must wait for live slices."""
        self.log_path.unlink(missing_ok=True)
        self.index.delete()
        return self.close()

    def release_maps(self) -> bool:
        """Try to close maps that payload slices kept open; True when all are closed."""
        maps = self._stale_maps
        if self._map is not None and self._view is None:
            maps.append(self._map)
            self._map = None
        still_open = []
        for m in maps:
            try:
                m.close()
            except BufferError:
                still_open.append(m)
        self._stale_maps = still_open
        return not still_open

    def __del__(self) -> None:
        # A Log dropped without close() (a simulated crash) must not leak descriptors;
        # nothing is flushed or truncated here, exactly as after kill -9.
        with contextlib.suppress(Exception):
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    # -- writing -----------------------------------------------------------------

    def append(self, payload: bytes | memoryview, size: int, offset: int, count: int,
               timestamp: int, prefix: bytes = b"") -> None:
        """Append one entry; ``size`` counts ``prefix`` + ``payload``, stored back to back."""
        pos = self.size
        end = pos + HEADER_SIZE + size
        if end > self.file_size:
            self._ensure_file_size(end)
        tail = _TAIL.pack(offset, count, timestamp)
        crc = crc32c(tail)
        if prefix:
            crc = crc32c(prefix, crc)
        head = _LENGTH_CRC.pack(LENGTH_OVERHEAD + size, crc32c(payload, crc))
        parts = (head, tail, prefix, payload) if prefix else (head, tail, payload)
        self._write_at(parts, pos, end - pos)
        if timestamp > self.max_timestamp:
            self.max_timestamp = timestamp
            self._max_timestamp_offset = offset
        if pos - self.last_index_position >= self.index_interval:
            # After the log write: a crash in between leaves a sparser index, which
            # recovery rebuilds, never an index entry pointing at nothing. A failed
            # index write (a full disk) skips the point; the next append tries again.
            # (try, not contextlib.suppress: this runs per append and try costs nothing.)
            try:
                self.index.append(offset - self.base_offset, pos, self.max_timestamp)
                self.last_index_position = pos
            except OSError:
                pass
        self.size = end
        self.next_offset = offset + count

    def append_batch(self, payloads: list[bytes | memoryview] | tuple[bytes | memoryview, ...],
                     first_offset: int, timestamp: int, total: int) -> None:
        """Append one entry of count 1 per payload with one write.

        ``total`` is the bytes the entries take including headers; the caller checked
        that they fit and that the index has room for every entry they may need.
        """
        start = self.size
        end = start + total
        if end > self.file_size:
            self._ensure_file_size(end)
        parts: list[bytes | memoryview] = []
        add = parts.append
        pack_tail = _TAIL.pack
        pack_head = _LENGTH_CRC.pack
        interval = self.index_interval
        last_indexed = self.last_index_position
        index_points: list[tuple[int, int]] = []
        pos = start
        offset = first_offset
        # The hot loop of the broker's write path: locals only, one tail pack, two CRC
        # calls (the running value avoids concatenating header and payload).
        for payload in payloads:
            n = len(payload)
            tail = pack_tail(offset, 1, timestamp)
            add(pack_head(LENGTH_OVERHEAD + n, crc32c(payload, crc32c(tail))))
            add(tail)
            add(payload)
            if pos - last_indexed >= interval:
                index_points.append((offset, pos))
                last_indexed = pos
            pos += HEADER_SIZE + n
            offset += 1
        data = b"".join(parts)
        if len(data) != total:
            raise ValueError("payloads must be bytes or 1-byte-format memoryviews")
        self._write_at((data,), start, total)
        if timestamp > self.max_timestamp:
            self.max_timestamp = timestamp
            self._max_timestamp_offset = first_offset
        if index_points:
            base = self.base_offset
            max_ts = self.max_timestamp
            try:
                self.index.append_many([(point_offset - base, point_position, max_ts)
                                        for point_offset, point_position in index_points])
                self.last_index_position = last_indexed
            except OSError:
                pass  # as in append: the points are skipped
        self.size = end
        self.next_offset = offset

    def truncate(self, position: int) -> None:
        """Drop every entry at or after ``position`` (an entry boundary)."""
        keep = self.index.lookup_position(position - 1) + 1 if position else 0
        self.index.truncate_entries(keep)
        # Down then up: the dropped bytes become zeros (recovery must not find the old
        # entries again), and live slices into them never touch a page past EOF.
        os.ftruncate(self._fd, position)
        os.ftruncate(self._fd, self.file_size)
        self._hints.clear()
        if keep:
            _rel, start, max_ts = self.index.entry(keep - 1)
            self.last_index_position = start
        else:
            start, max_ts = 0, NO_TIMESTAMP
            self.last_index_position = _NEVER_INDEXED
        m = self._map
        unpack = HEADER.unpack_from
        next_offset = self.base_offset
        pos = start
        while pos < position:
            length, _crc, base, count, ts = unpack(m, pos)
            if ts > max_ts:
                max_ts = ts
            next_offset = base + count
            pos += 4 + length
        self.size = position
        self.next_offset = next_offset if position else self.base_offset
        self.max_timestamp = max_ts
        self._max_timestamp_offset = None

    # -- reading -----------------------------------------------------------------

    def position_of(self, offset: int) -> int:
        """Position of the entry containing ``offset``, or ``size`` if none does."""
        pos = self._hints.get(offset)
        if pos is not None:
            return pos
        m = self._map
        size = self.size
        if not size:
            return 0
        unpack = HEADER.unpack_from
        i = self.index.lookup(offset - self.base_offset)
        if i >= 0:
            rel, pos, _ts = self.index.entry(i)
            if pos >= size or unpack(m, pos)[2] != self.base_offset + rel:
                raise CorruptLogError(
                    f"{self.index.path}: entry {i} does not point at offset "
                    f"{self.base_offset + rel} (position {pos})"
                )
        else:
            pos = 0
        while pos < size:
            length, _crc, base, count, _ts = unpack(m, pos)
            if base + count > offset:
                return pos
            pos += 4 + length
        return size

    def entry_at(self, position: int) -> tuple[int, int]:
        """(base_offset, count) of the entry at ``position``."""
        _length, _crc, base, count, _ts = HEADER.unpack_from(self._map, position)
        return base, count

    def read(self, offset: int, max_bytes: int, min_one: bool, out: list[LogRecord]
             ) -> tuple[int, bool]:
        """Append entries from the one containing ``offset`` to ``out``.

        Returns the payload bytes taken and whether ``max_bytes`` stopped the read.
        """
        pos = self.position_of(offset)
        size = self.size
        m = self._map
        view = self._view
        unpack = HEADER.unpack_from
        new = tuple.__new__  # a NamedTuple's own __new__ costs twice as much
        add = out.append
        allow_oversized = min_one and not out
        total = 0
        while pos < size:
            length, _crc, base, count, ts = unpack(m, pos)
            taken = total + length - LENGTH_OVERHEAD
            if taken > max_bytes and not allow_oversized:
                hints = self._hints
                if len(hints) >= _MAX_HINTS:
                    hints.clear()
                # The consumer's next fetch starts here: skip the index search then.
                hints[base] = pos
                return total, True
            allow_oversized = False
            end = pos + 4 + length
            add(new(LogRecord, (base, count, ts, view[pos + HEADER_SIZE:end])))
            total = taken
            pos = end
        return total, False

    def find_timestamp(self, timestamp: int, from_position: int) -> int | None:
        """Base offset of the first entry at or after ``from_position`` with ts >= target."""
        index = self.index
        i = index.first_reaching_timestamp(timestamp)
        # Index entry i-1 has a running max below the target, so nothing up to it can
        # match; with no such entry the whole segment must be scanned.
        pos = index.entry(min(i, index.entries) - 1)[1] if i else 0
        pos = max(pos, from_position)
        m = self._map
        unpack = HEADER.unpack_from
        size = self.size
        while pos < size:
            length, _crc, base, _count, ts = unpack(m, pos)
            if ts >= timestamp:
                return base
            pos += 4 + length
        return None

    @property
    def max_timestamp_offset(self) -> int | None:
        """Base offset of the first entry carrying ``max_timestamp`` (None if empty)."""
        if not self.size:
            return None
        if self._max_timestamp_offset is None:
            # Only unknown after recovery; the index narrows it to one interval.
            self._max_timestamp_offset = self.find_timestamp(self.max_timestamp, 0)
        return self._max_timestamp_offset

    def max_timestamp_from(self, position: int) -> tuple[int, int] | None:
        """(max timestamp, first base offset carrying it) of entries from ``position``."""
        m = self._map
        unpack = HEADER.unpack_from
        size = self.size
        best: tuple[int, int] | None = None
        pos = position
        while pos < size:
            length, _crc, base, _count, ts = unpack(m, pos)
            if best is None or ts > best[0]:
                best = (ts, base)
            pos += 4 + length
        return best

    def first_timestamp(self) -> int | None:
        if not self.size:
            return None
        return HEADER.unpack_from(self._map, 0)[4]

    # -- recovery ----------------------------------------------------------------

    def recover(self, trusted_until: int) -> ScanResult:
        """Find the end of the good data and bring the index in line with it.

        Entries that end at or before ``trusted_until`` were synced before the last
        checkpoint and only get their headers checked; later ones are CRC-verified.
        Scanning starts from the last trustworthy index entry, so a cleanly closed
        segment costs a binary search and a few header reads.
        """
        file_size = self.file_size
        index = self.index
        start, expected, max_ts = 0, self.base_offset, NO_TIMESTAMP
        keep = 0
        # One header read keeps the trusted fast path from vouching for a segment whose
        # start is damaged: that must surface as a problem at position 0.
        first_ok = not file_size or self._entry_header_matches(0, self.base_offset)
        if first_ok and index.entries and index.is_consistent(file_size):
            i = index.lookup_position(min(trusted_until, file_size))
            if i >= 0:
                rel, pos, ts = index.entry(i)
                if self._entry_header_matches(pos, self.base_offset + rel):
                    start, expected, max_ts = pos, self.base_offset + rel, ts
                    keep = i + 1
        index.truncate_entries(keep)
        self.last_index_position = start if keep else _NEVER_INDEXED
        end, next_offset, max_ts, problem = self._scan(start, expected, max_ts, trusted_until)
        self.size = end
        self.next_offset = next_offset
        self.max_timestamp = max_ts
        self._max_timestamp_offset = None
        return ScanResult(end, problem)

    def _entry_header_matches(self, pos: int, offset: int) -> bool:
        if pos + HEADER_SIZE > self.file_size:
            return False
        # pread, not the map: the position may be unwritten (see _written_end).
        length, _crc, base, count, _ts = HEADER.unpack(os.pread(self._fd, HEADER_SIZE, pos))
        return (base == offset and count >= 1 and length >= LENGTH_OVERHEAD
                and pos + 4 + length <= self.file_size)

    def _written_end(self, position: int) -> int:
        """Where the first unwritten (sparse) stretch at or after ``position`` begins.

        Recovery reads up to the end of the data and one header past it. Past the
        written bytes it uses pread: a read fault on a hole of a shared map makes tmpfs
        allocate the page, and on a full tmpfs that is SIGBUS, not an error.
        """
        try:
            return min(os.lseek(self._fd, position, os.SEEK_HOLE), self.file_size)
        except OSError:  # ENXIO: at or past the end of the file
            return position

    def _scan(self, pos: int, expected: int, max_ts: int, trusted_until: int
              ) -> tuple[int, int, int, str | None]:
        m = self._map
        view = self._view
        fd = self._fd
        file_size = self.file_size
        written_end = self._written_end(pos)
        unpack = HEADER.unpack_from
        index = self.index
        interval = self.index_interval
        last_indexed = self.last_index_position
        base_offset = self.base_offset
        problem: str | None = None
        while True:
            if pos + HEADER_SIZE > file_size:
                if pos < file_size and any(os.pread(fd, file_size - pos, pos)):
                    problem = "truncated entry header"
                break
            if pos + HEADER_SIZE <= written_end:
                length, crc, base, count, ts = unpack(m, pos)
            else:
                length, crc, base, count, ts = unpack(os.pread(fd, HEADER_SIZE, pos))
            if length == 0:
                break
            end = pos + 4 + length
            if length < LENGTH_OVERHEAD:
                problem = f"entry length {length} is too small"
                break
            if end > file_size:
                problem = f"entry of {length} bytes runs past the end of the file"
                break
            if base != expected:
                problem = f"entry has base offset {base}, expected {expected}"
                break
            if count < 1 or base - base_offset > MAX_RELATIVE_OFFSET:
                problem = f"entry has an invalid count {count}"
                break
            if end > trusted_until and crc32c(
                view[pos + 8:end] if end <= written_end else os.pread(fd, end - pos - 8, pos + 8)
            ) != crc:
                problem = "CRC mismatch"
                break
            if ts > max_ts:
                max_ts = ts
            # A full index (index_max_bytes lowered since) only makes lookups in the
            # tail scan further; the next append rolls. So does a point a full disk
            # refuses.
            if pos > last_indexed and pos - last_indexed >= interval and not index.is_full:
                with contextlib.suppress(OSError):
                    index.append(base - base_offset, pos, max_ts)
                    last_indexed = pos
            expected = base + count
            pos = end
        self.last_index_position = last_indexed
        return pos, expected, max_ts, problem

    def cut(self, position: int) -> None:
        """Drop everything from ``position`` on after recovery found it unusable."""
        os.ftruncate(self._fd, position)
        os.ftruncate(self._fd, self.file_size)

    def nonzero_extent(self, start: int) -> int:
        """End of the last non-zero byte at or after ``start`` (``start`` if none).

        Walks only the file's data regions, so a sparse pre-allocated tail is free.
        """
        fd = self._fd
        regions: list[tuple[int, int]] = []
        pos = start
        while pos < self.file_size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            regions.append((data, min(hole, self.file_size)))
            pos = hole
        chunk = 1 << 20
        for region_start, region_end in reversed(regions):
            hi = region_end
            while hi > region_start:
                lo = max(region_start, hi - chunk)
                data = os.pread(fd, hi - lo, lo).rstrip(b"\0")
                if data:
                    return lo + len(data)
                hi = lo
        return start

    # -- internals ---------------------------------------------------------------

    def _write_at(self, parts: tuple[bytes | memoryview, ...], position: int, total: int) -> None:
        """Write an entry at ``position`` (the end of the data), or leave nothing there."""
        try:
            _write_all(self._fd, parts, position, total)
        except OSError:
            # A short write before the error (ENOSPC mid-entry) left part of the entry
            # on disk. Readers never look past ``size``, but recovery after a crash
            # would find the fragment: cut it. Shrinking needs no free space; growing
            # back keeps the file sparse.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, position)
                os.ftruncate(self._fd, self.file_size)
            raise

    def _ensure_file_size(self, end: int) -> None:
        if end <= self.file_size:
            return
        # Grow in steps (only without pre-allocation, or for an oversized entry) so a
        # growing segment is remapped a handful of times, not once per append.
        new_size = min(max(end, self.file_size * 2, _GROWTH_STEP), max(self.capacity, end))
        os.ftruncate(self._fd, new_size)
        self._remap(new_size)

    def _remap(self, file_size: int) -> None:
        old_map, old_view = self._map, self._view
        if file_size:
            self._map = mmap.mmap(self._fd, file_size, access=mmap.ACCESS_READ)
            self._view = memoryview(self._map)
        else:
            self._map = self._view = None
        self.file_size = file_size
        if old_view is not None:
            old_view.release()
        if old_map is not None:
            try:
                old_map.close()
            except BufferError:
                # Slices handed to readers still point into it; they stay valid.
                self._stale_maps.append(old_map)
