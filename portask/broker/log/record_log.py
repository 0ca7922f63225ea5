"""RecordLog: the one offset-addressed log of records that a Kafka partition and an AMQP
stream queue both are.

Entries are stored as received, one storage entry per append: a Kafka RecordBatch v2 as
the producer sent it (spanning as many offsets as it has records), or an AMQP message
(``amqp_message``, one offset). A log holds one stored format, named at open, so that a
Kafka fetch can send stored bytes zero-copy and an AMQP delivery can send the stored
property bytes untouched. Reads return slices of the segment map; ``watch`` wakes long
polls on the next append; retention is the storage log's own (``LogConfig``), applied
by the log directory's periodic pass. ``records`` is the protocol-neutral view (offset,
timestamp, key, value, headers) of either format: what lets one protocol read the
other's log through an adapter.
"""

from __future__ import annotations

import asyncio
import enum
import struct
from collections.abc import Iterator
from typing import NamedTuple

from portask.broker.log import amqp_message, kafka_batch
from portask.broker.log.errors import UnreadableRecords
from portask.storage.log import Log, LogConfig, LogRecord

# How much one step of a whole-log scan reads: large, as scans run rarely (rebuilds
# after a restart, compaction, a ListOffsets by timestamp) and want few reads.
SCAN_CHUNK = 4 << 20


class StoredFormat(enum.Enum):
    KAFKA_BATCH = "kafka-batch"
    AMQP_MESSAGE = "amqp-message"


class Record(NamedTuple):
    """One record, whichever format stored it. For an AMQP message the key is the
    routing key, the value the body, and the property bytes come as published
    (``properties``; decoding them is the AMQP codec's part); a Kafka record has no
    exchange and no properties."""

    offset: int
    timestamp: int
    key: bytes | None
    value: memoryview | None
    headers: tuple[tuple[str, bytes | None], ...]
    exchange: str | None = None
    properties: memoryview | None = None


_new_record = tuple.__new__


class RecordLog:
    """A storage log plus its stored format and the readers waiting for it to grow."""

    __slots__ = ("_waiters", "_write_failing", "format", "log")

    def __init__(self, log: Log, stored_format: StoredFormat) -> None:
        self.log = log
        self.format = stored_format
        self._waiters: set[asyncio.Future[None]] = set()
        self._write_failing = False

    @property
    def start_offset(self) -> int:
        return self.log.start_offset

    @property
    def end_offset(self) -> int:
        return self.log.end_offset

    def configure(self, config: LogConfig) -> None:
        """New storage settings (retention, segment size) for the next appends and passes."""
        self.log.config = config

    def append(
        self, payload: bytes | bytearray | memoryview, count: int = 1,
        timestamp: int | None = None, prefix: bytes = b"",
    ) -> int:
        """Append one entry spanning ``count`` offsets; returns its base offset.

        OSError (a full disk) leaves the log as it was; every append tries the disk
        again, so writes resume by themselves once space returns.
        """
        try:
            base = self.log.append(payload, count, timestamp, prefix=prefix)
        except OSError as exc:
            self._write_failed(exc)
            self._write_failing = True
            raise
        if self._write_failing:
            self._write_failing = False
            self._writes_again(base)
        if self._waiters:
            self.wake()
        return base

    def _write_failed(self, exc: OSError) -> None:
        """An append failed (``_write_failing`` says whether the previous one did too)."""

    def _writes_again(self, base: int) -> None:
        """The first append to succeed after failures."""

    def read(self, offset: int, max_bytes: int, *, min_one: bool = True) -> list[LogRecord]:
        return self.log.read(offset, max_bytes, min_one=min_one)

    def entries(self, offset: int, end: int, chunk_bytes: int) -> Iterator[LogRecord]:
        return self.log.entries(offset, end, chunk_bytes)

    def scan(self, start: int) -> Iterator[LogRecord]:
        """Every entry from the one holding ``start`` up to the end of the log."""
        log = self.log
        offset = start
        while offset < log.end_offset:
            entries = log.read(offset, SCAN_CHUNK)
            if not entries:
                return
            for entry in entries:
                yield entry
                offset = entry.offset + entry.count

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """The first offset of the first entry that may hold ``timestamp_ms`` or later."""
        return self.log.offset_for_timestamp(timestamp_ms)

    def watch(self, waiter: asyncio.Future[None]) -> None:
        """Resolve ``waiter`` on the next append (long-polling readers)."""
        self._waiters.add(waiter)

    def unwatch(self, waiter: asyncio.Future[None]) -> None:
        self._waiters.discard(waiter)

    def wake(self) -> None:
        """Resolve every waiter: after an append, or when the log goes away."""
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- the record view -----------------------------------------------------------------

    def records(self, entry: LogRecord, limit: int) -> Iterator[Record]:
        """The records of one stored entry, decoded from its format.

        ``limit`` bounds how far a compressed Kafka batch is decompressed. Transaction
        markers hold no records. Raises ``UnreadableRecords`` (a ValueError) for stored
        bytes it cannot read, at once or part-way through.
        """
        if self.format is StoredFormat.AMQP_MESSAGE:
            yield _amqp_record(entry)
            return
        payload = entry.payload
        if kafka_batch.is_control(payload):
            return
        base = entry.offset
        # tuple.__new__ rather than Record(...): a NamedTuple's own constructor is a
        # Python-level call, paid per record delivered across protocols.
        for delta, timestamp, key, value, headers in kafka_batch.decode_records(payload, limit):
            yield _new_record(Record, (base + delta, timestamp, key, value, headers, None, None))

    def records_from(self, offset: int, limit: int) -> Iterator[Record]:
        """Every record from ``offset`` to the end of the log, lazily."""
        for entry in self.scan(max(offset, self.start_offset)):
            for record in self.records(entry, limit):
                if record.offset >= offset:
                    yield record


def _amqp_record(entry: LogRecord) -> Record:
    try:
        _f, _p, exchange, routing_key, properties, body, _d = amqp_message.split(entry.payload)
    except (struct.error, ValueError) as exc:
        raise UnreadableRecords(f"stored message unreadable: {exc}") from None
    return Record(entry.offset, entry.timestamp, routing_key.encode(), body, (), exchange,
                  properties)
