# Over 500 lines: a lane's settled bitmap, ack log, recovery and write failures keep one invariant.
"""LogStore: one FIFO lane of a durable queue, in its own segment log.

``LogStore`` is one FIFO lane of a durable queue:

- Messages are records in a segment log (``Log``), stored as received: a 16-byte
  header (persistent flag, priority, the TTL deadline), exchange, routing key, the raw
  content-header property bytes and the body. The ref is the record's offset.
- Python state per message is one bit: a settled-bitmap over the offsets from the
  low-water mark (every offset below it is settled) to the end. Ready messages are
  "never dispatched offsets from ``cursor`` on, minus settled ones" plus a small heap of
  requeued offsets, so a backlog of a million messages costs ~125 KB, not a million
  objects; consumers read records back from the segments in batches.
- Settlements (ack, drop, dead-letter, purge) are recorded durably in a small side
  log ("acks") as offset ranges, together with the transient messages' offsets (they
  do not survive a restart) and a "delivered up to" mark, so that after a crash
  unacked messages come back with redelivered=true. The mark is exact: it is written
  at the commit point, and no delivery leaves the broker before a commit point.
- Once the low-water mark passes a segment boundary the segments below it are
  deleted (``Log.delete_before``), and ack-log segments that only talk about settled
  offsets go with them.

Appends are grouped: a publish assigns the next offset at once and the record is
appended (one ``append_many`` per lane) at the *commit point*, which the AMQP
connection reaches before it writes replies and publisher confirms. With
``storage.fsync: always`` the commit point also fsyncs every log it appended to, once
per read batch. So a confirm always follows the append, and with ``always`` the fsync.

A write that fails (a full disk, an I/O error) costs the publishes it carried and
nothing else. Their offsets are settled at once, so they are never delivered, and
the publishers that routed them (``Publisher``, which the vhost names at each
publish) hear which of their publishes to nack. Everything written before stays
readable and ackable. Offsets are never reused while the process runs, because a
consumer may hold a ref to one: the next successful append first writes one "void"
entry spanning the offsets that never reached the log, and readers skip it. While a
lane's last write failed, a publish is written before it may go straight to a
waiting consumer, so what is nacked is not delivered; the first write that succeeds
ends that state. Nothing waits for a restart.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Protocol

from portask.broker.amqp.message_store.message import (
    Message,
    Publisher,
    StoreFailed,
    decode_deadline,
    decode_record,
    encode_record,
    push_each,
    record_body_size,
)
from portask.storage.log import Log, LogRecord, StorageError

log = logging.getLogger("portask.amqp")

# Ack-log record sections: type byte, count u32, then count little-endian i64 values.
_SECTION = struct.Struct("<cI")
_SETTLED = b"A"  # (first offset, length) pairs of settled offsets
_VOLATILE = b"V"  # (first offset, length) pairs of transient messages: gone after restart
_MARK = b"M"  # one value: every offset below it may have been delivered
_RESET = b"R"  # forget every earlier record (written after recovery found stale acks)

READ_AHEAD_BYTES = 256 * 1024
# Drop the settled prefix of the bitmap once it is this many bytes long.
_BITS_TRIM_BYTES = 64 * 1024


class LaneStorage(Protocol):
    """What a lane needs from the storage that runs its commit point (QueueStorage)."""

    fsync_always: bool
    publisher: Publisher | None

    def dirty(self, store: LogStore) -> None: ...

    def write_failed(self, store: LogStore, exc: BaseException, first: bool) -> None: ...

    def writes_again(self, store: LogStore) -> None: ...

    def failure_to_log(self, key: str) -> bool: ...

    def recovery_to_log(self, key: str) -> bool: ...

    def retry_settlements(self, store: LogStore) -> None: ...


def _ranges(offsets: list[int]) -> list[int]:
    """Sorted offsets as flat (first, length) pairs: acks are mostly contiguous runs."""
    offsets.sort()
    out: list[int] = []
    first = prev = offsets[0]
    for offset in offsets[1:]:
        if offset == prev + 1:
            prev = offset
            continue
        if offset == prev:
            continue
        out += (first, prev - first + 1)
        first = prev = offset
    out += (first, prev - first + 1)
    return out


def _section(kind: bytes, values: list[int]) -> bytes:
    return _SECTION.pack(kind, len(values)) + struct.pack(f"<{len(values)}q", *values)


def _sections(payload: memoryview) -> Iterator[tuple[bytes, tuple[int, ...]]]:
    pos = 0
    size = len(payload)
    while pos + _SECTION.size <= size:
        kind, count = _SECTION.unpack_from(payload, pos)
        pos += _SECTION.size
        values = struct.unpack_from(f"<{count}q", payload, pos)
        pos += 8 * count
        yield kind, values


class LogStore:
    """One FIFO lane of a durable queue, kept in a segment log (see the module doc)."""

    # Slots: attribute access on the publish and deliver paths stays fast however many
    # attributes there are (CPython stops sharing instance dict keys past 30).
    __slots__ = (
        "_ack_backlog", "_ack_backlog_named", "_ack_marks", "_ack_max", "_ack_segments",
        "_acks", "_acks_failing", "_bits", "_bits_base", "_bytes", "_bytes_known",
        "_cursor", "_deleted", "_held_failed", "_last_publisher", "_log", "_low", "_mark",
        "_next", "_pending", "_publishers", "_readahead", "_ready", "_redelivered_below",
        "_registered", "_requeued", "_settled_pending", "_settled_ranges", "_storage",
        "_unconfirmed_from", "_volatile_pending", "failed", "name", "track_bytes",
    )

    def __init__(self, storage: LaneStorage, messages: Log, acks: Log, name: str) -> None:
        self._storage = storage
        self._log = messages
        self._acks = acks
        self.name = name
        self.track_bytes = False
        self.failed = False
        self._deleted = False
        self._pending: list[bytes] = []
        self._settled_pending: list[int] = []
        self._settled_ranges: list[int] = []
        self._volatile_pending: list[int] = []
        self._registered = False
        # Publishers of the offsets from _unconfirmed_from on (appended, or with fsync:
        # always fsynced, not yet): (publisher, its first publish_seq among them).
        self._publishers: list[tuple[Publisher, int]] = []
        self._last_publisher: Publisher | None = None
        # Records of a failed write that a consumer had already been handed (a publish
        # delivered straight to a waiting consumer): their refs must stay readable,
        # though their offsets are settled (and their segment may be deleted).
        self._held_failed: dict[int, bytes] = {}
        # Ack-log sections a failed write left behind, retried at the next commit point.
        self._ack_backlog: list[bytes] = []
        self._ack_backlog_named = -1
        self._acks_failing = False
        self._requeued: list[int] = []
        self._readahead: deque[LogRecord] = deque()
        # (ack-log offset after a record, largest queue offset named up to that record):
        # ack-log segments before an entry whose value is below the low-water mark are
        # about settled messages only and can be deleted.
        self._ack_marks: deque[tuple[int, int]] = deque()
        self._ack_max = -1
        self._ack_segments = 0
        self._bytes = 0
        self._bytes_known = True
        self._recover()

    # -- recovery ----------------------------------------------------------------------

    def _recover(self) -> None:
        messages = self._log
        start = messages.start_offset
        end = messages.end_offset
        self._next = end
        self._bits_base = start
        self._bits = bytearray((end - start) // 8 + 1)
        mark = 0
        stale = False
        offset = self._acks.start_offset
        bases = self._acks.segment_base_offsets
        segment = -1
        while offset < self._acks.end_offset:
            records = self._acks.read(offset, 1 << 20)
            for record in records:
                offset = record.offset + 1
                for kind, values in _sections(record.payload):
                    if kind == _RESET:
                        self._bits = bytearray(len(self._bits))
                        mark = 0
                        stale = False
                        self._ack_marks.clear()
                        self._ack_max = -1
                    elif kind == _MARK:
                        mark = max(mark, values[0])
                        self._ack_max = max(self._ack_max, values[0])
                    else:
                        for i in range(0, len(values), 2):
                            first, length = values[i], values[i + 1]
                            last = first + length
                            self._ack_max = max(self._ack_max, last - 1)
                            if last > end:
                                stale = True
                            self._set_range(max(first, start), min(last, end))
                # One entry per ack-log segment, as at run time (see _note_ack_record).
                in_segment = bisect.bisect_right(bases, record.offset)
                if in_segment == segment and self._ack_marks:
                    self._ack_marks[-1] = (offset, self._ack_max)
                else:
                    self._ack_marks.append((offset, self._ack_max))
                segment = in_segment
        self._ack_segments = -1  # the next record starts a fresh entry
        settled = int.from_bytes(self._bits, "little").bit_count()
        self._ready = end - start - settled
        self._low = start
        self._cursor = start
        self._advance_low()
        self._cursor = self._low
        self._mark = mark
        self._redelivered_below = min(mark, end)
        self._unconfirmed_from = end
        self._bytes_known = self._ready == 0
        if stale:
            # The message log lost a tail (a machine crash before a flush) that the ack
            # log still names; those offsets will be reused, so restate the truth and
            # make every earlier ack record void.
            self._write_reset()

    def _write_reset(self) -> None:
        sections = [_section(_RESET, [])]
        settled: list[int] = []
        for offset in range(self._low, self._next):
            if self._is_settled(offset):
                settled.append(offset)
        if settled:
            sections.append(_section(_SETTLED, _ranges(settled)))
        if self._mark:
            sections.append(_section(_MARK, [self._mark]))
        self._acks.append(b"".join(sections))
        self._acks.flush()
        self._ack_marks.clear()
        self._ack_max = max([self._mark, *settled]) if settled or self._mark else -1
        self._ack_marks.append((self._acks.end_offset, self._ack_max))

    # -- bitmap ------------------------------------------------------------------------

    def _set_range(self, first: int, last: int) -> None:
        """Mark [first, last) settled (recovery and purge: possibly long runs)."""
        bits = self._bits
        base = self._bits_base
        i, j = first - base, last - base
        if j <= i:
            return
        need = (j >> 3) + 1
        if need > len(bits):
            bits.extend(bytes(need - len(bits)))
        while i < j and i & 7:
            bits[i >> 3] |= 1 << (i & 7)
            i += 1
        full_end = j & ~7
        if i < full_end:
            bits[i >> 3:full_end >> 3] = b"\xff" * ((full_end - i) >> 3)
            i = full_end
        while i < j:
            bits[i >> 3] |= 1 << (i & 7)
            i += 1

    def _is_settled(self, offset: int) -> bool:
        i = offset - self._bits_base
        if i < 0:
            return True
        byte = i >> 3
        bits = self._bits
        return byte < len(bits) and bool(bits[byte] >> (i & 7) & 1)

    def _advance_low(self) -> None:
        bits = self._bits
        base = self._bits_base
        low = self._low
        end = self._next
        size = len(bits) << 3
        while low < end:
            i = low - base
            if i >= size:
                break
            if not i & 7 and bits[i >> 3] == 0xFF:
                low += 8
                continue
            if not bits[i >> 3] >> (i & 7) & 1:
                break
            low += 1
        self._low = min(low, end)

    # -- queue operations ----------------------------------------------------------------

    def __len__(self) -> int:
        return self._ready

    @property
    def bytes(self) -> int:
        """Body bytes of ready messages (counted only for queues with a byte limit)."""
        if not self._bytes_known:
            self._bytes = self._scan_ready_bytes()
            self._bytes_known = True
        return self._bytes

    def count_bytes(self) -> None:
        self.track_bytes = True
        self._bytes_known = False  # scanned from the log at the next read of ``bytes``

    def _scan_ready_bytes(self) -> int:
        self._write_pending_quietly()
        total = 0
        for offset in self._requeued:
            total += record_body_size(self._read_one(offset).payload)
        offset = self._cursor
        end = self._log.end_offset
        while offset < end:
            for record in self._log.read(offset, 1 << 20):
                if record.payload and not self._is_settled(record.offset):
                    total += record_body_size(record.payload)
                offset = record.offset + record.count
        return total

    def push(self, message: Message, deadline: int, persistent: bool) -> None:
        self._assign(message, deadline, persistent)
        self._ready += 1
        if self.track_bytes:
            self._bytes += len(message.body)

    def load(self, messages: list[tuple[Message, int]], all_persistent: bool) -> int:
        return push_each(self, messages, all_persistent)

    def push_delivered(self, message: Message, deadline: int, persistent: bool) -> int:
        """Append a message that goes straight to a consumer (the queue had none ready).

        After a failed write the record is written first, so that a publish that fails
        again is refused (StoreFailed) before anything reached a consumer.
        """
        offset = self._assign(message, deadline, persistent)
        if self.failed:
            self._ready += 1  # ready until written: a failure uncounts it as it does push's
            self._append_pending()
            self._ready -= 1
        self._cursor = offset + 1
        self._readahead.clear()
        return offset

    def _assign(self, message: Message, deadline: int, persistent: bool) -> int:
        if self._deleted:
            raise StoreFailed(self.name)
        offset = self._next
        self._next = offset + 1
        self._pending.append(encode_record(message, deadline, persistent))
        if not persistent:
            self._volatile_pending.append(offset)
        publisher = self._storage.publisher
        if publisher is not self._last_publisher and publisher is not None:
            # Once per run of publishes from one publisher, not once per message.
            self._last_publisher = publisher
            self._publishers.append((publisher, publisher.publish_seq))
        byte = (offset - self._bits_base) >> 3
        bits = self._bits
        if byte >= len(bits):
            bits.extend(bytes(max(4096, byte + 1 - len(bits))))
        if not self._registered:
            self._register()
        return offset

    def _register(self) -> None:
        self._registered = True
        self._storage.dirty(self)

    def pop(self) -> tuple[int, Message, bool, int] | None:
        if self._requeued and (record := self._pop_requeued()) is not None:
            offset = record.offset
            redelivered = True
        else:
            record = self._next_ready()
            if record is None:
                return None
            offset = record.offset
            redelivered = offset < self._redelivered_below
        message, deadline = decode_record(record.payload)
        self._ready -= 1
        if self.track_bytes:
            self._bytes -= len(message.body)
        return offset, message, redelivered, deadline

    def _pop_requeued(self) -> LogRecord | None:
        requeued = self._requeued
        while requeued:
            offset = requeued[0]
            # A delivery requeued before its commit point is written first; if that
            # fails, the failure settles it and takes it off the heap.
            if offset >= self._log.end_offset and not self._write_pending_quietly():
                continue
            heapq.heappop(requeued)
            return self._read_one(offset)
        return None

    def _next_ready(self) -> LogRecord | None:
        readahead = self._readahead
        while True:
            if not readahead:
                cursor = self._cursor
                if cursor >= self._next or self._deleted:
                    return None
                # Past the log's end: pending records (written now), or offsets of a
                # failed write, which are settled.
                if cursor >= self._log.end_offset and (
                        not self._pending or not self._write_pending_quietly()):
                    return None
                readahead.extend(self._log.read(cursor, READ_AHEAD_BYTES))
            record = readahead.popleft()
            offset = record.offset
            if not record.payload:
                self._void(record)
                continue
            if offset < self._cursor:
                continue
            self._cursor = offset + 1
            if not self._registered:
                self._register()  # the commit point records the new delivered-mark
            if not self._is_settled(offset):
                return record

    def _void(self, record: LogRecord) -> None:
        """Pass a void entry (no payload): offsets that a failed write never stored.

        They were settled when the write failed; if a crash lost that ack record they
        were counted ready at recovery, and are settled here instead.
        """
        end = record.offset + record.count
        unsettled = [o for o in range(record.offset, end) if not self._is_settled(o)]
        if unsettled:
            self._ready -= len(unsettled)
            self.ack(unsettled)
        if end > self._cursor:
            self._cursor = end

    def _read_one(self, offset: int) -> LogRecord:
        """The record behind a ref a consumer holds (or a requeued one)."""
        if self._held_failed:
            payload = self._held_failed.get(offset)
            if payload is not None:
                return LogRecord(offset, 1, 0, memoryview(payload))
        if offset >= self._log.end_offset:
            self._append_pending()
        return self._log.read(offset, 1)[0]

    def peek(self) -> Iterator[tuple[Message, bool, int]]:
        """Ready messages in the order pop would take them; nothing moves (cursor,
        read-ahead, requeued heap and the delivered mark stay as they are)."""
        if self._deleted:
            return
        self._write_pending_quietly()
        for offset in sorted(self._requeued):
            message, deadline = decode_record(self._read_one(offset).payload)
            yield message, True, deadline
        offset = self._cursor
        end = self._log.end_offset
        while offset < end:
            records = self._log.read(offset, READ_AHEAD_BYTES)
            if not records:
                return
            for record in records:
                if (record.payload and record.offset >= self._cursor
                        and not self._is_settled(record.offset)):
                    message, deadline = decode_record(record.payload)
                    yield message, record.offset < self._redelivered_below, deadline
                offset = record.offset + record.count

    def peek_deadline(self) -> int:
        if self._deleted:
            return 0
        requeued = self._requeued
        if requeued and requeued[0] >= self._log.end_offset:
            self._write_pending_quietly()
        if requeued:
            return decode_deadline(self._read_one(requeued[0]).payload)
        readahead = self._readahead
        while True:
            if not readahead:
                cursor = self._cursor
                if cursor >= self._next:
                    return 0
                if cursor >= self._log.end_offset and (
                        not self._pending or not self._write_pending_quietly()):
                    return 0
                readahead.extend(self._log.read(cursor, READ_AHEAD_BYTES))
            record = readahead[0]
            offset = record.offset
            if not record.payload:
                self._void(record)
            elif offset >= self._cursor:
                if not self._is_settled(offset):
                    return decode_deadline(record.payload)
                # Settled records ahead of the cursor are passed for good, as
                # _next_ready would, so a long settled run is read only once.
                self._cursor = offset + 1
            readahead.popleft()

    def requeue(self, refs: list[int]) -> None:
        if self._pending and refs and max(refs) >= self._log.end_offset:
            self._write_pending_quietly()  # a delivery requeued before its commit point
        held_failed = self._held_failed
        if held_failed:
            for offset in refs:
                held_failed.pop(offset, None)
        # A delivered message is settled only if the write that carried it failed: it
        # was nacked, so it does not come back.
        kept = [offset for offset in refs if not self._is_settled(offset)]
        for offset in kept:
            heapq.heappush(self._requeued, offset)
        self._ready += len(kept)
        if self.track_bytes:
            for offset in kept:
                self._bytes += record_body_size(self._read_one(offset).payload)

    def ack(self, refs: Iterable[int]) -> None:
        bits = self._bits
        base = self._bits_base
        settled = self._settled_pending
        low = self._low
        held_failed = self._held_failed
        if held_failed:
            refs = list(refs)
            for offset in refs:
                held_failed.pop(offset, None)
        advance = False
        for offset in refs:
            i = offset - base
            bits[i >> 3] |= 1 << (i & 7)
            settled.append(offset)
            if offset == low:
                advance = True
        if advance:
            self._advance_low()
        if not self._registered:
            self._register()

    def fetch(self, ref: int) -> Message:
        if ref >= self._log.end_offset:
            self._write_pending_quietly()
        return decode_record(self._read_one(ref).payload)[0]

    def logged(self) -> Iterator[Message]:
        self._write_pending_quietly()
        log = self._log
        offset = self._low
        while offset < log.end_offset:
            records = log.read(offset, READ_AHEAD_BYTES)
            if not records:
                return
            for record in records:
                offset = record.offset + record.count
                if record.payload and not self._is_settled(record.offset):
                    yield decode_record(record.payload)[0]

    def purge(self) -> int:
        """Settle every ready message (unacked ones stay with their consumers)."""
        count = self._ready
        if not count:
            return 0
        requeued, self._requeued = self._requeued, []
        if requeued:
            self.ack(requeued)
        first = self._cursor
        if first < self._next:
            # Recording already-settled offsets again is harmless and keeps this O(1)
            # in Python objects for a purge of a million messages.
            self._set_range(first, self._next)
            self._settled_ranges += (first, self._next - first)
            self._cursor = self._next
            self._readahead.clear()
            self._advance_low()
            if not self._registered:
                self._register()
        self._ready = 0
        self._bytes = 0
        self._bytes_known = True
        return count

    def delete(self) -> None:
        self._pending.clear()
        self._readahead.clear()
        self._requeued.clear()
        self._held_failed.clear()
        self._publishers = []
        self._deleted = True

    def forget(self, refs: Iterable[int]) -> None:
        """Nothing is held in memory for an offset."""

    # -- commit point --------------------------------------------------------------------

    def _append_pending(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        first = self._next - len(pending)
        messages = self._log
        try:
            gap = first - messages.end_offset
            if gap:
                if gap < 0:
                    raise StorageError(f"offsets went out of step at {first}")
                # Offsets of earlier failed writes: refs may name them, so they are
                # never reused. One entry without payload spans them all.
                messages.append(b"", gap)
            messages.append_many(pending)
        except (OSError, StorageError, ValueError) as exc:
            self._write_failed(exc, pending, first)
            raise StoreFailed(self.name) from exc
        if self.failed:
            self.failed = False
            self._storage.writes_again(self)
        if not self._storage.fsync_always:
            self._confirmed()

    def _write_pending_quietly(self) -> bool:
        """Append pending records now; False if that failed (and was dealt with)."""
        try:
            self._append_pending()
        except StoreFailed:
            return False
        return True

    def _confirmed(self) -> None:
        """Everything assigned so far is stored as the flush policy promises."""
        self._unconfirmed_from = self._next
        if self._publishers:
            self._publishers = []
            self._last_publisher = None

    def _write_failed(self, exc: BaseException, pending: list[bytes], first_pending: int
                      ) -> None:
        """A write (with fsync: always, or its fsync) failed: undo what it carried.

        Every offset not yet confirmable (from ``_unconfirmed_from``) is settled, so
        it is never delivered from now on; their publishers hear which publishes to
        nack. Records that a consumer already holds stay readable.
        """
        first = self._unconfirmed_from
        end = self._next
        cursor = self._cursor
        is_settled = self._is_settled
        # From the cursor on they were ready; below it, handed to consumers already.
        lost = sum(1 for o in range(max(first, cursor), end) if not is_settled(o))
        for offset in range(first, min(cursor, end)):
            if not is_settled(offset):
                self._held_failed[offset] = (
                    pending[offset - first_pending] if offset >= first_pending
                    else bytes(self._log.read(offset, 1)[0].payload))  # appended, not synced
        requeued = self._requeued
        if requeued:
            kept = [o for o in requeued if o < first]
            if len(kept) != len(requeued):
                lost += len(requeued) - len(kept)
                heapq.heapify(kept)
                self._requeued = kept
        self._ready -= lost
        self._set_range(first, end)
        self._settled_ranges += (first, end - first)
        self._advance_low()
        self._bytes_known = not self.track_bytes
        first_seqs: dict[Publisher, int] = {}
        for publisher, seq in self._publishers:  # in publish order: the first one counts
            first_seqs.setdefault(publisher, seq)
        self._unconfirmed_from = end
        self._publishers = []
        self._last_publisher = None
        for publisher, seq in first_seqs.items():
            publisher.write_failed(seq)
        if not self._registered:
            self._register()  # the settlement goes into the ack log at the commit point
        first_failure = not self.failed
        self.failed = True
        self._storage.write_failed(self, exc, first_failure)

    def commit(self) -> None:
        """Append pending records and write the ack record; then trim settled segments."""
        if self._deleted:
            self._registered = False
            return
        if (self._write_pending_quietly() and self._storage.fsync_always
                and self._unconfirmed_from < self._next):
            try:
                self._log.flush()
            except (OSError, StorageError) as exc:
                self._write_failed(exc, [], self._next)
            else:
                self._confirmed()
        # Cleared only now: a failure above settles offsets that this commit records.
        self._registered = False
        self._write_settlements()
        try:
            self._trim()
        except (OSError, StorageError) as exc:
            # The segments are gone (that is what frees a full disk); only the log's
            # checkpoint did not follow, which costs a longer recovery, not data.
            log.warning("cannot trim the log of a queue", extra={"fields": {
                "queue": self.name, "error": str(exc)}})

    def _write_settlements(self) -> None:
        sections = self._ack_backlog
        named = self._ack_backlog_named
        if self._settled_pending or self._settled_ranges:
            values = _ranges(self._settled_pending) if self._settled_pending else []
            values += self._settled_ranges
            self._settled_pending = []
            self._settled_ranges = []
            sections.append(_section(_SETTLED, values))
            named = max(named, max(values[i] + values[i + 1] - 1
                                   for i in range(0, len(values), 2)))
        if self._volatile_pending:
            values = _ranges(self._volatile_pending)
            self._volatile_pending = []
            sections.append(_section(_VOLATILE, values))
            named = max(named, values[-2] + values[-1] - 1)
        if self._cursor > self._mark:
            # Everything below the cursor may be in a socket buffer once this commit
            # point returns: after a crash it comes back flagged redelivered.
            self._mark = self._cursor
            sections.append(_section(_MARK, [self._mark]))
            named = max(named, self._mark)
        if not sections:
            return
        try:
            self._acks.append(b"".join(sections))
        except (OSError, StorageError) as exc:
            # Kept and retried at the next commit point: until then a crash costs
            # redeliveries, never a message.
            self._ack_backlog = sections
            self._ack_backlog_named = named
            self._storage.retry_settlements(self)
            if not self._acks_failing:
                self._acks_failing = True
                if self._storage.failure_to_log(self._acks_key):
                    log.warning("cannot write the ack log of a queue; retrying", extra={
                        "fields": {"queue": self.name, "error": str(exc)}})
            return
        self._ack_backlog = []
        self._ack_backlog_named = -1
        if self._acks_failing:
            self._acks_failing = False
            if self._storage.recovery_to_log(self._acks_key):
                log.warning("ack log of a queue written again", extra={"fields": {
                    "queue": self.name}})
        self._ack_max = max(self._ack_max, named)
        self._note_ack_record()

    @property
    def _acks_key(self) -> str:
        return f"{self.name} acks"

    def _note_ack_record(self) -> None:
        # Deletion happens a whole ack-log segment at a time, so one entry per segment
        # is enough: folding records into the segment's last entry only makes the cut
        # wait for the largest offset that segment names, and keeps this bounded.
        marks = self._ack_marks
        segments = self._acks.segment_count
        entry = (self._acks.end_offset, self._ack_max)
        if marks and self._ack_segments == segments:
            marks[-1] = entry
        else:
            marks.append(entry)
        self._ack_segments = segments

    def _trim(self) -> None:
        messages = self._log
        if messages.segment_count > 1:
            # Past the log's end the low-water mark only covers a failed write's offsets.
            cut = min(self._low, messages.end_offset)
            if cut >= messages.segment_base_offsets[1]:
                # A failed write settles offsets the cursor has not reached yet, so the
                # mark can be ahead of it; what lies between is settled, and goes.
                self._cursor = max(self._cursor, cut)
                messages.delete_before(cut)
        low = self._low
        marks = self._ack_marks
        cut = 0
        while marks and marks[0][1] < low:
            cut = marks.popleft()[0]
        acks = self._acks
        if cut and acks.segment_count > 1 and cut >= acks.segment_base_offsets[1]:
            acks.delete_before(min(cut, acks.end_offset))
        trim = (low - self._bits_base) >> 3
        if trim >= _BITS_TRIM_BYTES:
            del self._bits[:trim]
            self._bits_base += trim << 3
