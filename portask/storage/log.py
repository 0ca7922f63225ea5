# Over 500 lines: appends, rolls, flushes, reads, truncation and retention move one segment list.
"""A log: a directory of segments with one active segment taking appends.

Offsets are logical: an entry spans ``count`` consecutive offsets (a Kafka batch of
100 records is one entry of count 100), so a log of N entries may hold far more
offsets. Everything here runs on one event loop; only ``FlushTicket.sync`` may run
in a thread.

Durability: rolling trims the old segment at once and fdatasyncs it in a background
thread (``flush.py``); the recovery point moves past it only once that sync is done.
The checkpoint file (``checkpoint.py``) records the log start offset and the recovery
point (everything before it is synced); recovery trusts the data before it and
CRC-verifies the rest.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from portask.storage.checkpoint import (
    CHECKPOINT_TMP,
    RecoveryPoint,
    read_checkpoint,
    write_checkpoint,
)
from portask.storage.files import fsync_directory
from portask.storage.flush import FlushTicket, RollSync
from portask.storage.flush import background_sync as _background_sync
from portask.storage.segment import (
    HEADER_SIZE,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    MAX_PAYLOAD_BYTES,
    MAX_RELATIVE_OFFSET,
    MAX_SEGMENT_BYTES,
    NO_TIMESTAMP,
    CorruptLogError,
    LogRecord,
    OffsetOutOfRange,
    Segment,
    StorageError,
)

__all__ = [
    "CorruptLogError",
    "FlushTicket",
    "Log",
    "LogConfig",
    "LogRecord",
    "OffsetOutOfRange",
    "StorageError",
    "TimestampAndOffset",
]

logger = logging.getLogger("portask.storage")

# Where rewritten (compacted) segments are built before they replace the originals.
_REWRITE_DIR = ".rewrite"
_MIB = 1024 * 1024
_DAY_MS = 24 * 3600 * 1000
# How many rolled segments may await their background sync before a roll waits for them:
# bounds the closed-but-unsynced data a machine crash can cost.
_MAX_PENDING_ROLL_SYNCS = 2


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Storage settings of one log; the application maps its own config onto these.

    ``flush_ms`` and the retention settings are not acted on by ``Log`` by itself: the
    owner calls ``flush()`` / ``apply_retention()`` on its timers (``needs_flush`` and
    ``unflushed_entries`` say whether a flush has anything to do).
    """

    segment_bytes: int = 128 * _MIB
    segment_ms: int | None = 7 * _DAY_MS
    index_interval_bytes: int = 4096
    index_max_bytes: int = 10 * _MIB
    retention_ms: int | None = None
    retention_bytes: int | None = None
    flush_messages: int | None = None
    flush_ms: int | None = None
    fsync_always: bool = False
    preallocate: bool = True

    def __post_init__(self) -> None:
        if not HEADER_SIZE <= self.segment_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be in [{HEADER_SIZE}, {MAX_SEGMENT_BYTES}]")
        if self.index_interval_bytes < 0:
            raise ValueError("index_interval_bytes must be >= 0")
        if self.index_max_bytes < 16:
            raise ValueError("index_max_bytes must be >= 16")
        for name in ("segment_ms", "retention_ms", "retention_bytes", "flush_ms"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None")
        if self.flush_messages is not None and self.flush_messages < 1:
            raise ValueError("flush_messages must be >= 1 or None")


class TimestampAndOffset(NamedTuple):
    timestamp: int
    offset: int


class _Damage(NamedTuple):
    """Where recovery had to cut a log, for the one warning it logs."""

    segment: str
    position: int
    reason: str
    dropped_bytes: int
    dropped_segments: list[int]


class Log:
    """An append-only log of opaque payloads addressed by logical offset."""

    def __init__(self, directory: Path, config: LogConfig, clock: Callable[[], float]) -> None:
        """Use ``Log.open``; this only sets up the empty object."""
        self.directory = directory
        self.config = config
        self._clock = clock
        self._segments: list[Segment] = []
        self._bases: list[int] = []
        self._active: Segment | None = None
        self._start_offset = 0
        self._recovery_point = RecoveryPoint(0, 0, 0)
        # Entries appended / known synced, as running totals so that a roll or a
        # concurrent flush never makes the count of unflushed entries go wrong.
        self._appended = 0
        self._synced = 0
        # Bumped by truncate_to so an in-flight flush cannot record a recovery point
        # past data that was cut meanwhile.
        self._generation = 0
        self._roll_syncs: list[RollSync] = []
        self._retired: list[Segment] = []
        self._closed = False

    # -- opening and recovery ----------------------------------------------------

    @classmethod
    def open(cls, directory: Path, config: LogConfig | None = None, *,
             clock: Callable[[], float] = time.time) -> Log:
        """Open (creating if needed) the log in ``directory``, recovering after a crash."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        log = cls(directory, config or LogConfig(), clock)
        try:
            log._recover()
        except BaseException:
            log._close_segments()
            raise
        return log

    def _recover(self) -> None:
        cfg = self.config
        bases = self._list_segment_files()
        checkpoint = read_checkpoint(self.directory)
        start_offset, rp = checkpoint if checkpoint is not None else (None, None)
        if not bases:
            base = start_offset or 0
            seg = Segment.create(self.directory, base, cfg.segment_bytes, cfg.index_max_bytes,
                                 cfg.index_interval_bytes, cfg.preallocate)
            self._install([seg], start_offset=base)
            self._recovery_point = RecoveryPoint(base, 0, base)
            if base or cfg.fsync_always:
                # A log starting past 0 must say where; with fsync: always, this also
                # makes the new files' directory entries durable.
                self._write_checkpoint(durable=True)
            # Otherwise none yet: recovering an empty segment 0 without a checkpoint
            # finds this same state, and two fsyncs per new log made creating queues
            # and topics in bulk (a restore) cost seconds.
            return

        segments, damage = self._recover_segments(bases, rp)
        last = segments[-1]
        if damage is not None:
            for base in reversed(damage.dropped_segments):
                # Newest first, so a crash in the middle leaves a contiguous prefix.
                (self.directory / f"{base:020d}{LOG_SUFFIX}").unlink(missing_ok=True)
                (self.directory / f"{base:020d}{INDEX_SUFFIX}").unlink(missing_ok=True)
            last.cut(last.size)
        for seg in segments[:-1]:
            # Also trims a rolled segment whose trim a crash interrupted: its scan ended
            # at a zero length, so only zeros go.
            seg.seal(sync=False)
        last.activate(max(cfg.segment_bytes, last.size), cfg.index_max_bytes, cfg.preallocate)
        first_ts = last.first_timestamp()
        now_ms = int(self._clock() * 1000)
        last.created_ms = now_ms if first_ts is None else min(first_ts, now_ms)
        if damage is not None:
            logger.warning(
                "log %s: segment %s is unreadable at position %d (%s): dropped %d bytes"
                "%s; the log now ends at offset %d",
                self.directory, damage.segment, damage.position, damage.reason,
                damage.dropped_bytes,
                f" and {len(damage.dropped_segments)} later segment(s)"
                if damage.dropped_segments else "",
                last.next_offset,
            )

        self._install(segments, start_offset=start_offset)
        first = segments[0]
        end_rp = RecoveryPoint(last.base_offset, last.size, last.next_offset)
        if rp is None or rp.segment_base < first.base_offset:
            rp = RecoveryPoint(first.base_offset, 0, first.base_offset)
        elif (rp.segment_base, rp.position) > (end_rp.segment_base, end_rp.position):
            rp = end_rp
        self._recovery_point = rp
        if checkpoint is None or damage is not None or checkpoint[1] != rp:
            # On a full disk the log still opens (and serves reads): the old checkpoint
            # never claims more than is on disk, and a missing one means verify all.
            self._write_checkpoint_if_possible(durable=True)

    def _recover_segments(self, bases: list[int], rp: RecoveryPoint | None
                          ) -> tuple[list[Segment], _Damage | None]:
        """Open and scan segments in order until the end of the good data."""
        cfg = self.config
        segments: list[Segment] = []
        expected: int | None = None
        for i, base in enumerate(bases):
            log_path = self.directory / f"{base:020d}{LOG_SUFFIX}"
            if expected is not None and base != expected:
                return segments, _Damage(
                    log_path.name, 0, f"base offset {base} does not follow offset {expected}",
                    0, bases[i:])
            is_last = i == len(bases) - 1
            seg = Segment.open(log_path, base, cfg.index_interval_bytes, cfg.index_max_bytes)
            segments.append(seg)
            if rp is None or base > rp.segment_base:
                trusted_until = 0
            elif base == rp.segment_base:
                trusted_until = rp.position
            else:
                trusted_until = seg.file_size
            end, problem = seg.recover(trusted_until)
            if end == 0 and not is_last:
                raise CorruptLogError(
                    f"{log_path}: position 0: first entry is invalid"
                    f" ({problem or 'no data'}) and later segments exist"
                )
            if problem is not None:
                dropped = (seg.nonzero_extent(end) if is_last else seg.file_size) - end
                return segments, _Damage(log_path.name, end, problem, dropped, bases[i + 1:])
            if is_last:
                # A zero length ends the data; anything non-zero after it is torn.
                extent = seg.nonzero_extent(end)
                if extent > end:
                    return segments, _Damage(log_path.name, end,
                                             "non-zero bytes after the end of the data",
                                             extent - end, [])
            expected = seg.next_offset
        return segments, None

    def _list_segment_files(self) -> list[int]:
        directory = self.directory
        logs: set[int] = set()
        indexes: set[int] = set()
        for entry in os.scandir(directory):
            name = entry.name
            if name == CHECKPOINT_TMP:
                os.unlink(entry.path)
                continue
            stem, dot, suffix = name.rpartition(".")
            if not dot or f".{suffix}" not in (LOG_SUFFIX, INDEX_SUFFIX):
                continue
            if len(stem) != 20 or not stem.isdigit():
                raise CorruptLogError(
                    f"{entry.path}: position 0: segment file name is not a 20-digit base offset"
                )
            (logs if f".{suffix}" == LOG_SUFFIX else indexes).add(int(stem))
        for base in indexes - logs:
            # Deleting a segment unlinks the .log first: an index left alone is garbage.
            (directory / f"{base:020d}{INDEX_SUFFIX}").unlink(missing_ok=True)
        return sorted(logs)

    def _install(self, segments: list[Segment], start_offset: int | None) -> None:
        self._segments = segments
        self._bases = [s.base_offset for s in segments]
        self._active = segments[-1]
        first = segments[0].base_offset
        start = first if start_offset is None else max(start_offset, first)
        # A checkpoint can name a start beyond data a machine crash lost; nothing below
        # the end can be served then, so the log starts at its end.
        self._start_offset = min(start, segments[-1].next_offset)

    def _write_checkpoint(self, durable: bool = False) -> None:
        """Write-temp-and-rename, so a reader sees the old or the new file, never half.

        Routine checkpoints skip fsync: the data they describe is already synced, and
        a lost or torn checkpoint only makes the next recovery verify more. For the
        same reason a routine one that cannot be written (a full disk) is skipped: the
        old checkpoint stays, still true, and the next one catches up. Durable ones
        (start offset, truncation) raise.
        """
        if durable:
            self._write_checkpoint_file(durable=True)
        else:
            self._write_checkpoint_if_possible(durable=False)

    def _write_checkpoint_if_possible(self, durable: bool) -> None:
        try:
            self._write_checkpoint_file(durable)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self.directory / CHECKPOINT_TMP)

    def _write_checkpoint_file(self, durable: bool) -> None:
        write_checkpoint(self.directory, self._start_offset, self._recovery_point, durable)

    # -- properties --------------------------------------------------------------

    @property
    def start_offset(self) -> int:
        return self._start_offset

    @property
    def end_offset(self) -> int:
        """The offset the next append gets."""
        return self._active_segment().next_offset

    @property
    def size_bytes(self) -> int:
        return sum(seg.size for seg in self._segments)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def segment_base_offsets(self) -> list[int]:
        return list(self._bases)

    @property
    def unflushed_entries(self) -> int:
        return self._appended - self._synced

    @property
    def needs_flush(self) -> bool:
        return self._appended != self._synced

    @property
    def retired_segments(self) -> int:
        """Deleted segments whose maps still wait for payload slices to be released."""
        return len(self._retired)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def max_timestamp(self) -> TimestampAndOffset | None:
        """The largest entry timestamp and the first offset carrying it (ListOffsets -3).

        Entries wholly below the log start do not count.
        """
        start = self._start_offset
        best: TimestampAndOffset | None = None
        for seg in self._segments:
            if not seg.size or seg.next_offset <= start:
                continue
            if best is not None and seg.max_timestamp <= best.timestamp:
                continue
            if seg.base_offset < start:
                # Only a suffix of this segment is live: rare (after delete_before),
                # and ListOffsets is rare, so a header scan is fine.
                found = seg.max_timestamp_from(seg.position_of(start))
            else:
                offset = seg.max_timestamp_offset
                assert offset is not None
                found = (seg.max_timestamp, offset)
            if found is not None and (best is None or found[0] > best.timestamp):
                best = TimestampAndOffset(found[0], max(found[1], start))
        return best

    # -- appending ---------------------------------------------------------------

    def append(self, payload: bytes | memoryview, count: int = 1,
               timestamp: int | None = None, *, prefix: bytes = b"") -> int:
        """Append one entry spanning ``count`` offsets; returns its base offset.

        ``prefix`` is stored right before ``payload`` as one entry: a caller that must
        change the first bytes of a large payload sends them apart instead of copying
        the whole payload.
        """
        if count < 1:
            raise ValueError("count must be >= 1")
        size = (payload.nbytes if type(payload) is memoryview else len(payload)) + len(prefix)
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload of {size} bytes is larger than {MAX_PAYLOAD_BYTES}")
        offset = self._append_entry(payload, size, count, timestamp, prefix)
        self._appended += 1
        cfg = self.config
        if cfg.fsync_always or (cfg.flush_messages is not None
                                and self._appended - self._synced >= cfg.flush_messages):
            self._flush(write_checkpoint=not cfg.fsync_always)
        return offset

    def append_many(self, payloads: Sequence[bytes | memoryview],
                    timestamp: int | None = None) -> int:
        """Append one entry of count 1 per payload; returns the first offset assigned.

        The fast path for batches of small records: one write for the whole batch
        when it fits the active segment. Memoryviews must have a 1-byte format.
        """
        seg = self._active_segment()
        first = seg.next_offset
        n = len(payloads)
        if not n:
            return first
        cfg = self.config
        now_ms = int(self._clock() * 1000)
        if timestamp is None:
            timestamp = now_ms
        total = sum(map(len, payloads)) + HEADER_SIZE * n
        interval = cfg.index_interval_bytes
        index_points = n if interval == 0 else total // interval + 1
        segment_ms = cfg.segment_ms
        pos = seg.size
        if (pos + total <= seg.capacity
                and seg.index.capacity - seg.index.entries >= index_points
                and first + n - 1 - seg.base_offset <= MAX_RELATIVE_OFFSET
                and not (pos and segment_ms is not None
                         and now_ms - seg.created_ms >= segment_ms)):
            if not pos:
                seg.created_ms = now_ms
            seg.append_batch(payloads, first, timestamp, total)
            self._appended += n
        else:
            # Crossing a roll: exactly what n single appends would do.
            for payload in payloads:
                size = payload.nbytes if type(payload) is memoryview else len(payload)
                if size > MAX_PAYLOAD_BYTES:
                    raise ValueError(f"payload of {size} bytes is too large")
                self._append_entry(payload, size, 1, timestamp)
                self._appended += 1
        if cfg.fsync_always or (cfg.flush_messages is not None
                                and self._appended - self._synced >= cfg.flush_messages):
            self._flush(write_checkpoint=not cfg.fsync_always)
        return first

    def _append_entry(self, payload: bytes | memoryview, size: int, count: int,
                      timestamp: int | None, prefix: bytes = b"") -> int:
        seg = self._active_segment()
        cfg = self.config
        segment_ms = cfg.segment_ms
        now_ms = int(self._clock() * 1000) if timestamp is None or segment_ms is not None else 0
        if timestamp is None:
            timestamp = now_ms
        entry_size = HEADER_SIZE + size
        pos = seg.size
        offset = seg.next_offset
        if pos:
            if (pos + entry_size > seg.capacity
                    or (pos - seg.last_index_position >= seg.index_interval
                        and seg.index.is_full)
                    or offset - seg.base_offset > MAX_RELATIVE_OFFSET
                    or (segment_ms is not None and now_ms - seg.created_ms >= segment_ms)):
                seg = self._roll(entry_size)
        elif entry_size > seg.capacity:
            seg.grow(entry_size)
        if not seg.size:
            seg.created_ms = now_ms if now_ms else int(self._clock() * 1000)
        seg.append(payload, size, offset, count, timestamp, prefix)
        return offset

    def _roll(self, entry_size: int) -> Segment:
        cfg = self.config
        old = self._active_segment()
        # The new segment first: if the disk is full or out of inodes, the old one is
        # still the active, unsealed segment and the log is as it was.
        seg = Segment.create(self.directory, old.next_offset,
                             max(cfg.segment_bytes, entry_size), cfg.index_max_bytes,
                             cfg.index_interval_bytes, cfg.preallocate)
        old.seal(sync=False)
        self._roll_syncs.append(RollSync(
            _background_sync(old.dup_fds()),
            RecoveryPoint(old.next_offset, 0, old.next_offset),
            self._appended,
            self._generation,
        ))
        self._segments.append(seg)
        self._bases.append(seg.base_offset)
        self._active = seg
        self._collect_roll_syncs(block=len(self._roll_syncs) > _MAX_PENDING_ROLL_SYNCS)
        self._release_retired()
        return seg

    def _collect_roll_syncs(self, block: bool) -> None:
        """Record finished background syncs of rolled segments (all of them if ``block``).

        Raises the OSError of a failed fdatasync: data the log acknowledged may not be
        on disk, which the owner must hear about.
        """
        syncs = self._roll_syncs
        advanced = False
        while syncs and (block or syncs[0].future.done()):
            done = syncs.pop(0)
            done.future.result()
            self._synced = max(self._synced, done.appended)
            rp, current = done.recovery_point, self._recovery_point
            if (done.generation == self._generation
                    and (rp.segment_base, rp.position)
                    > (current.segment_base, current.position)):
                self._recovery_point = rp
                advanced = True
        if advanced:
            self._write_checkpoint()

    # -- flushing ----------------------------------------------------------------

    def begin_flush(self) -> FlushTicket | None:
        """Start a flush whose ``sync`` may run in a thread; None if nothing is dirty."""
        seg = self._active_segment()
        self._collect_roll_syncs(block=False)
        rp = RecoveryPoint(seg.base_offset, seg.size, seg.next_offset)
        if self._appended == self._synced and rp == self._recovery_point:
            return None
        return FlushTicket(seg.dup_fds(), tuple(s.future for s in self._roll_syncs), rp,
                           self._appended, self._generation)

    def complete_flush(self, ticket: FlushTicket) -> None:
        """Record a synced ticket: advance the recovery point and write the checkpoint."""
        self._complete_flush(ticket, write_checkpoint=True)

    def _complete_flush(self, ticket: FlushTicket, write_checkpoint: bool) -> None:
        if self._closed:
            return
        # The ticket waited for the roll syncs it knew of; record them first.
        self._collect_roll_syncs(block=False)
        self._synced = max(self._synced, ticket.appended)
        rp = ticket.recovery_point
        current = self._recovery_point
        if (ticket.generation == self._generation
                and (rp.segment_base, rp.position) > (current.segment_base, current.position)):
            self._recovery_point = rp
        if write_checkpoint:
            self._write_checkpoint()

    def flush(self) -> None:
        """Sync everything appended so far to disk, then write the checkpoint."""
        self._flush(write_checkpoint=True)

    def _flush(self, write_checkpoint: bool) -> None:
        # fsync_always skips the checkpoint: the rename costs more than the data sync
        # (ext4 auto_da_alloc), and a checkpoint only bounds how much recovery verifies.
        # Rolls, explicit flush() calls and close() still write it.
        self._active_segment()
        self._collect_roll_syncs(block=True)
        ticket = self.begin_flush()
        if ticket is not None:
            ticket.sync()
            self._complete_flush(ticket, write_checkpoint)
        self._release_retired()

    # -- reading -----------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, *, min_one: bool = True) -> list[LogRecord]:
        """Entries from the one containing ``offset`` on, up to ``max_bytes`` of payload.

        At least one entry is returned when ``min_one`` and one exists, however large
        (Kafka KIP-74). Reading at ``end_offset`` returns [].
        """
        segments = self._segments
        active = self._active_segment()
        if offset >= active.base_offset:
            i = len(segments) - 1
            if offset >= active.next_offset:
                if offset == active.next_offset:
                    return []
                raise OffsetOutOfRange(f"offset {offset} is beyond the log end "
                                       f"{active.next_offset}")
        else:
            i = bisect.bisect_right(self._bases, offset) - 1
        if offset < self._start_offset:
            raise OffsetOutOfRange(f"offset {offset} is below the log start {self._start_offset}")
        out: list[LogRecord] = []
        taken, full = segments[i].read(offset, max_bytes, min_one, out)
        last = len(segments) - 1
        while not full and i < last:
            i += 1
            seg = segments[i]
            used, full = seg.read(seg.base_offset, max_bytes - taken, min_one, out)
            taken += used
        return out

    def entries(self, offset: int, end: int, chunk_bytes: int) -> Iterator[LogRecord]:
        """The entries holding ``offset`` and after, up to ``end``, read ``chunk_bytes``
        at a time; a reader overtaken by retention or DeleteRecords goes on from the new
        start (a reader's view, not an error)."""
        while offset < end:
            try:
                entries = self.read(offset, chunk_bytes)
            except OffsetOutOfRange:
                offset = self._start_offset
                continue
            if not entries:
                return
            for entry in entries:
                if entry.offset + entry.count > offset:
                    yield entry
            offset = entry.offset + entry.count

    def offset_for_timestamp(self, timestamp: int) -> int | None:
        """The first offset whose entry timestamp is >= ``timestamp``, or None."""
        start = self._start_offset
        for seg in self._segments:
            if seg.next_offset <= start or seg.max_timestamp < timestamp:
                continue
            from_position = seg.position_of(start) if seg.base_offset < start else 0
            found = seg.find_timestamp(timestamp, from_position)
            if found is not None:
                return max(found, start)
        return None

    # -- trimming ----------------------------------------------------------------

    def truncate_to(self, offset: int) -> None:
        """Drop every entry at or after ``offset``, which must start an entry."""
        active = self._active_segment()
        end = active.next_offset
        if offset == end:
            return
        if offset < self._start_offset or offset > end:
            raise OffsetOutOfRange(f"cannot truncate to {offset}: log holds "
                                   f"[{self._start_offset}, {end})")
        i = bisect.bisect_right(self._bases, offset) - 1
        seg = self._segments[i]
        pos = seg.position_of(offset)
        base, count = seg.entry_at(pos)
        if base != offset:
            raise StorageError(f"cannot truncate to {offset}: it is inside the entry "
                               f"[{base}, {base + count})")
        while len(self._segments) > i + 1:
            self._delete_segment(len(self._segments) - 1)
        seg.truncate(pos)
        if not seg.active:
            cfg = self.config
            seg.activate(max(cfg.segment_bytes, seg.size), cfg.index_max_bytes,
                         cfg.preallocate)
            self._active = seg
        # The zeros must be on disk before a checkpoint stops verifying past them, or a
        # machine crash could bring the dropped entries back.
        seg.sync()
        self._generation += 1
        rp = self._recovery_point
        if (rp.segment_base, rp.position) > (seg.base_offset, pos):
            self._recovery_point = RecoveryPoint(seg.base_offset, pos, offset)
        self._write_checkpoint(durable=True)
        self._release_retired()

    def rewrite_closed(
        self, transform: Callable[[LogRecord], bytes | bytearray | None]
    ) -> int:
        """Pass every entry of the closed segments through ``transform`` (compaction).

        ``transform`` returns a new payload for an entry, or None to keep it as it is;
        offsets, counts and timestamps never change, so readers see the same offsets.
        A changed segment is written beside the log, synced, and renamed over the old
        file, so a crash leaves either the old segment or the new one. Returns the
        bytes reclaimed.
        """
        cfg = self.config
        reclaimed = 0
        scratch = self.directory / _REWRITE_DIR
        for i, old in enumerate(list(self._segments[:-1])):
            entries: list[LogRecord] = []
            old.read(old.base_offset, old.size, True, entries)
            replaced = [transform(entry) for entry in entries]
            if all(p is None for p in replaced):
                continue
            scratch.mkdir(exist_ok=True)
            fresh = Segment.create(scratch, old.base_offset, old.size, cfg.index_max_bytes,
                                   cfg.index_interval_bytes, preallocate=False)
            try:
                for entry, payload in zip(entries, replaced, strict=True):
                    data = entry.payload if payload is None else payload
                    fresh.append(data, len(data), entry.offset, entry.count, entry.timestamp)
                fresh.seal(sync=True)
            finally:
                fresh.close()
            del entries
            index_path = old.log_path.with_suffix(INDEX_SUFFIX)
            # The log file first: a crash between the renames leaves an index that
            # recovery finds inconsistent and rebuilds.
            os.replace(fresh.log_path, old.log_path)
            os.replace(fresh.log_path.with_suffix(INDEX_SUFFIX), index_path)
            fsync_directory(self.directory)
            seg = Segment.open(old.log_path, old.base_offset, cfg.index_interval_bytes,
                               cfg.index_max_bytes)
            seg.recover(seg.file_size)
            seg.seal(sync=False)
            self._segments[i] = seg
            reclaimed += old.size - seg.size
            # The old inode lives on for readers still holding slices of its map.
            if not old.close():
                self._retired.append(old)
        return reclaimed

    def delete_before(self, offset: int) -> None:
        """Advance the log start to ``offset`` (persisted) and delete segments below it."""
        self._active_segment()
        if offset > self.end_offset:
            raise OffsetOutOfRange(f"cannot delete before {offset}: log ends at "
                                   f"{self.end_offset}")
        if offset <= self._start_offset:
            return
        self._start_offset = offset
        segments = self._segments
        while len(segments) > 1 and segments[0].next_offset <= offset:
            self._delete_segment(0)
        self._after_front_deletion()
        self._write_checkpoint(durable=True)

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Delete the oldest closed segments past retention; returns bytes deleted.

        A segment goes while the log is larger than ``retention_bytes`` or while its
        newest timestamp is older than ``retention_ms``. The active one always stays.
        """
        self._active_segment()
        self._release_retired()
        cfg = self.config
        if cfg.retention_bytes is None and cfg.retention_ms is None:
            return 0
        if now_ms is None:
            now_ms = int(self._clock() * 1000)
        cutoff = now_ms - cfg.retention_ms if cfg.retention_ms is not None else NO_TIMESTAMP
        limit = cfg.retention_bytes
        size = self.size_bytes
        deleted = 0
        segments = self._segments
        while len(segments) > 1:
            seg = segments[0]
            if (limit is not None and size > limit) or seg.max_timestamp < cutoff:
                size -= seg.size
                deleted += seg.size
                self._delete_segment(0)
            else:
                break
        if deleted:
            self._start_offset = max(self._start_offset, segments[0].base_offset)
            self._after_front_deletion()
            self._write_checkpoint()
        return deleted

    def _after_front_deletion(self) -> None:
        first = self._segments[0]
        if self._recovery_point.segment_base < first.base_offset:
            # The recovery point's segment is gone; everything left is closed (synced)
            # or verified again, so the first remaining segment's start is safe.
            self._recovery_point = RecoveryPoint(first.base_offset, 0, first.base_offset)

    def _delete_segment(self, i: int) -> None:
        seg = self._segments.pop(i)
        self._bases.pop(i)
        if not seg.delete():
            # A payload slice (say, queued in a transport) still points into the map;
            # closing it now would raise BufferError, so try again later.
            self._retired.append(seg)

    def release_retired(self) -> int:
        """Close maps of deleted segments no slice uses any more; returns how many wait."""
        self._release_retired()
        return len(self._retired)

    def _release_retired(self) -> None:
        retired = self._retired
        if retired:
            self._retired = [seg for seg in retired if not seg.release_maps()]

    # -- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Flush, cut the files to their used size and release the maps."""
        if self._closed:
            return
        active = self._active_segment()
        self.flush()
        active.seal(sync=True)
        self._recovery_point = RecoveryPoint(active.base_offset, active.size,
                                              active.next_offset)
        # Everything is synced: without a new checkpoint (a full disk) the next open
        # only verifies more.
        self._write_checkpoint_if_possible(durable=True)
        self._closed = True
        self._close_segments()

    def discard(self) -> None:
        """Close a log whose files are about to be removed (a deleted topic or queue):
        release files and maps, and sync nothing, since nothing of it is kept."""
        if self._closed:
            return
        self._closed = True
        self._close_segments()

    def _close_segments(self) -> None:
        for seg in self._segments:
            if not seg.close():
                self._retired.append(seg)
        self._release_retired()

    def _active_segment(self) -> Segment:
        seg = self._active
        if self._closed or seg is None:
            raise StorageError(f"log {self.directory} is closed")
        return seg

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Log({str(self.directory)!r}, start={self._start_offset}, "
                f"end={self._active.next_offset if self._active else None}, "
                f"segments={len(self._segments)})")
