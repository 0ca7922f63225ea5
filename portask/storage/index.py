"""The sparse offset index of one segment: a memory-mapped array of fixed-size entries.

Each entry is (relative_offset u32, position u32, max_timestamp i64), little-endian:
the log entry whose base offset is ``segment.base_offset + relative_offset`` starts at
``position`` in the segment's .log file, and ``max_timestamp`` is the largest entry
timestamp in the segment up to and including that entry. Entries are strictly
increasing in offset and position and non-decreasing in timestamp, so all three
lookups are binary searches.

The file of the active segment is pre-allocated (sparse) to ``max_bytes``; unused
entries are zeros. Only the first entry can have position 0, which is how the number
of entries is found again after a crash. Writes go through ``os.pwrite`` and reads
through a read-only map, so a full disk surfaces as an ``OSError`` instead of SIGBUS.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from pathlib import Path

from portask.storage import files

ENTRY = struct.Struct("<IIq")
ENTRY_SIZE = ENTRY.size


class OffsetIndex:
    """One segment's .index file. Single-threaded; the owner decides when to append."""

    __slots__ = ("_capacity", "_dirty", "_fd", "_map", "entries", "path")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._map: mmap.mmap | None = None
        self._capacity = 0
        self.entries = 0
        # Whether anything was written since the last dup_fd_if_dirty: lets a flush
        # skip an fdatasync that would only cost a journal round trip.
        self._dirty = False

    @classmethod
    def open(cls, path: Path, max_bytes: int | None, *, new: bool = False) -> OffsetIndex:
        """Open (creating if missing) an index; ``max_bytes`` pre-allocates an active one.

        The entry count is recovered by binary search; whether the entries are
        trustworthy is for ``is_consistent`` to say. ``new``: the file is created empty
        here (truncated if it exists), so there is nothing to count.
        """
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if new else 0)
        fd = os.open(path, flags, 0o644)
        index = cls(path, fd)
        try:
            file_size = os.fstat(fd).st_size
            if max_bytes is not None:
                file_size = index._extend(max_bytes, file_size)
            index._remap(file_size)
            # A new index's probes would be ~20 preads of zeros (a durable queue or a
            # topic made by a restore opens one each).
            index.entries = 0 if new else index._count_entries()
        except BaseException:
            index.close()
            raise
        return index

    @property
    def capacity(self) -> int:
        """How many entries fit without growing the file."""
        return self._capacity

    @property
    def is_full(self) -> bool:
        return self.entries >= self._capacity

    @property
    def file_size_is_valid(self) -> bool:
        return os.fstat(self._fd).st_size % ENTRY_SIZE == 0

    def entry(self, i: int) -> tuple[int, int, int]:
        assert self._map is not None
        return ENTRY.unpack_from(self._map, i * ENTRY_SIZE)

    def last(self) -> tuple[int, int, int] | None:
        if not self.entries:
            return None
        return self.entry(self.entries - 1)

    def lookup(self, relative_offset: int) -> int:
        """Index of the last entry with relative offset <= target, or -1."""
        n = self.entries
        if not n:
            return -1
        m = self._map
        unpack = ENTRY.unpack_from
        # Consumers mostly read near the tail: answer them without a search.
        if unpack(m, (n - 1) * ENTRY_SIZE)[0] <= relative_offset:
            return n - 1
        lo, hi = 0, n - 1
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if unpack(m, mid * ENTRY_SIZE)[0] <= relative_offset:
                lo = mid
            else:
                hi = mid - 1
        return lo if unpack(m, lo * ENTRY_SIZE)[0] <= relative_offset else -1

    def lookup_position(self, position: int) -> int:
        """Index of the last entry whose position is <= ``position``, or -1."""
        lo, hi = 0, self.entries - 1
        unpack = ENTRY.unpack_from
        m = self._map
        found = -1
        while lo <= hi:
            mid = (lo + hi) >> 1
            if unpack(m, mid * ENTRY_SIZE)[1] <= position:
                found = mid
                lo = mid + 1
            else:
                hi = mid - 1
        return found

    def first_reaching_timestamp(self, timestamp: int) -> int:
        """Index of the first entry whose running max timestamp is >= ``timestamp``.

        Returns ``entries`` when none is: the answer then lies after the last entry.
        """
        lo, hi = 0, self.entries
        unpack = ENTRY.unpack_from
        m = self._map
        while lo < hi:
            mid = (lo + hi) >> 1
            if unpack(m, mid * ENTRY_SIZE)[2] >= timestamp:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def append(self, relative_offset: int, position: int, max_timestamp: int) -> None:
        n = self.entries
        if n >= self._capacity:
            raise IndexError(f"{self.path}: index is full ({n} entries)")
        data = ENTRY.pack(relative_offset, position, max_timestamp)
        if os.pwrite(self._fd, data, n * ENTRY_SIZE) != ENTRY_SIZE:
            raise OSError(f"{self.path}: short write to index")
        self.entries = n + 1
        self._dirty = True

    def append_many(self, entries: list[tuple[int, int, int]]) -> None:
        """Several entries with one write (a batch append crossing several intervals)."""
        n = self.entries
        if n + len(entries) > self._capacity:
            raise IndexError(f"{self.path}: index is full ({n} entries)")
        pack = ENTRY.pack
        data = b"".join([pack(rel, pos, ts) for rel, pos, ts in entries])
        if os.pwrite(self._fd, data, n * ENTRY_SIZE) != len(data):
            raise OSError(f"{self.path}: short write to index")
        self.entries = n + len(entries)
        self._dirty = True

    def is_consistent(self, log_size: int) -> bool:
        """Whether the entries are structurally sound for a log of ``log_size`` bytes.

        Checks size, ordering and bounds from the index alone; whether an entry really
        points at an entry boundary is checked by the segment, which owns the log.
        """
        if not self.file_size_is_valid:
            return False
        n = self.entries
        if not n:
            return True
        assert self._map is not None
        prev_rel, prev_pos, prev_ts = ENTRY.unpack_from(self._map, 0)
        if prev_rel != 0 or prev_pos != 0:
            return False
        view = memoryview(self._map)[ENTRY_SIZE : n * ENTRY_SIZE]
        try:
            for rel, pos, ts in ENTRY.iter_unpack(view):
                if rel <= prev_rel or pos <= prev_pos or ts < prev_ts:
                    return False
                prev_rel, prev_pos, prev_ts = rel, pos, ts
        finally:
            view.release()
        return prev_pos < log_size

    def truncate_entries(self, count: int) -> None:
        """Keep the first ``count`` entries; everything after them reads as zeros again.

        Also clears stale entries past ``entries`` that a crash may have left, which
        is why it punches the file even when ``count == entries``.
        """
        file_size = os.fstat(self._fd).st_size
        # Down then up: the dropped entries become holes that read as zeros, which is
        # what the entry count search on the next open relies on.
        os.ftruncate(self._fd, count * ENTRY_SIZE)
        os.ftruncate(self._fd, file_size)
        self.entries = count
        self._dirty = True

    def seal(self) -> None:
        """Shrink the file to the used entries (a closed segment's index)."""
        os.ftruncate(self._fd, self.entries * ENTRY_SIZE)
        self._dirty = True
        # The map may now extend past the end of the file; nothing reads beyond
        # ``entries``, and appends never happen on a sealed index.
        self._capacity = self.entries

    def activate(self, max_bytes: int) -> None:
        """Re-extend a sealed index so it can take appends again."""
        file_size = os.fstat(self._fd).st_size
        new_size = self._extend(max_bytes, file_size)
        self._remap(new_size)

    def sync(self) -> None:
        files.datasync(self._fd)

    def dup_fd_if_dirty(self) -> int | None:
        """A descriptor to fdatasync if entries changed since the last call, else None."""
        if not self._dirty:
            return None
        self._dirty = False
        return os.dup(self._fd)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def __del__(self) -> None:
        # An index dropped without close() (a simulated crash) must not leak its fd.
        with contextlib.suppress(Exception):
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _extend(self, max_bytes: int, file_size: int) -> int:
        target = max(max_bytes - max_bytes % ENTRY_SIZE, ENTRY_SIZE)
        if file_size < target:
            os.ftruncate(self._fd, target)
            return target
        return file_size

    def _remap(self, file_size: int) -> None:
        old = self._map
        self._map = mmap.mmap(self._fd, file_size, access=mmap.ACCESS_READ) if file_size else None
        if old is not None:
            # Index maps are never handed out, so closing cannot hit a live export.
            old.close()
        self._capacity = file_size // ENTRY_SIZE

    def _count_entries(self) -> int:
        cap = self._capacity
        if not cap:
            return 0
        fd = self._fd

        def entry(i: int) -> tuple[int, int, int]:
            # pread, not the map: the probes land in the sparse, unwritten part, and a
            # read fault there makes tmpfs allocate a page (SIGBUS when it is full).
            return ENTRY.unpack(os.pread(fd, ENTRY_SIZE, i * ENTRY_SIZE))

        # Entry 0 is (0, 0, ts) when present, so it cannot be told from zeros by its
        # position: count it when anything after it is set or its timestamp is.
        lo, hi = 1, cap
        while lo < hi:
            mid = (lo + hi) >> 1
            if entry(mid)[1] > 0:
                lo = mid + 1
            else:
                hi = mid
        if lo > 1:
            return lo
        return 1 if any(entry(0)) else 0
