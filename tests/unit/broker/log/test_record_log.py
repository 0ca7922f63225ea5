"""The one log: Kafka batches and AMQP messages stored as received, read back by offset
as stored bytes and as records, long polls woken by appends."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from portask.broker.amqp.message_store import Message, encode_record
from portask.broker.log.errors import UnreadableRecords
from portask.broker.log.record_log import Record, RecordLog, StoredFormat
from portask.storage.log import Log, LogConfig
from tests import kafka_batches as kb

LIMIT = 1 << 20


def open_log(tmp_path: Path, stored_format: StoredFormat) -> RecordLog:
    return RecordLog(Log.open(tmp_path / "log", LogConfig(preallocate=False)), stored_format)


@pytest.mark.parametrize("codec", [kb.NONE, kb.GZIP, kb.SNAPPY, kb.LZ4, kb.ZSTD])
def test_kafka_batches_read_back_as_stored_and_as_records(tmp_path: Path, codec: int) -> None:
    log = open_log(tmp_path, StoredFormat.KAFKA_BATCH)
    first = kb.batch([kb.Record(b"k0", b"v0", ((b"h", b"x"), (b"n", None)), 0),
                      kb.Record(None, None, (), 5)], codec)
    second = kb.batch([kb.Record(b"k2", b"v2", (), 9)], codec)
    assert log.append(first, count=2, timestamp=kb.BASE_TS) == 0
    assert log.append(second, count=1, timestamp=kb.BASE_TS + 9) == 2
    stored = log.read(0, 1 << 20)
    assert [bytes(e.payload) for e in stored] == [first, second]  # as received
    assert isinstance(stored[0].payload, memoryview)
    found = list(log.records_from(0, LIMIT))
    assert [(r.offset, r.timestamp, r.key) for r in found] == [
        (0, kb.BASE_TS, b"k0"), (1, kb.BASE_TS + 5, None), (2, kb.BASE_TS + 9, b"k2")]
    assert [None if r.value is None else bytes(r.value) for r in found] == [b"v0", None, b"v2"]
    assert found[0].headers == (("h", b"x"), ("n", None))
    assert found[0].exchange is None and found[0].properties is None
    # From an offset inside a batch: the records before it are not returned.
    assert [r.offset for r in log.records_from(1, LIMIT)] == [1, 2]


def test_a_transaction_marker_holds_no_records(tmp_path: Path) -> None:
    log = open_log(tmp_path, StoredFormat.KAFKA_BATCH)
    log.append(kb.batch([kb.Record(b"\x00\x00\x00\x01", b"\x00" * 6, (), 0)], kb.NONE,
                        control=True), count=1, timestamp=kb.BASE_TS)
    log.append(kb.batch([kb.Record(b"k", b"v", (), 0)], kb.NONE), count=1,
               timestamp=kb.BASE_TS)
    assert [(r.offset, r.key) for r in log.records_from(0, LIMIT)] == [(1, b"k")]


def test_amqp_messages_read_back_as_stored_and_as_records(tmp_path: Path) -> None:
    log = open_log(tmp_path, StoredFormat.AMQP_MESSAGE)
    message = Message("ex", "rk.1", b"\x10\x00\x02", b"body bytes", persistent=True)
    stored = encode_record(message, 0, True)
    assert log.append(stored, timestamp=1234) == 0
    assert bytes(log.read(0, 1 << 20)[0].payload) == stored
    (record,) = list(log.records_from(0, LIMIT))
    assert record == Record(0, 1234, b"rk.1", record.value, (), "ex", record.properties)
    assert bytes(record.value or b"") == b"body bytes"
    assert bytes(record.properties or b"") == b"\x10\x00\x02"


def test_unreadable_stored_bytes_raise_one_error_type(tmp_path: Path) -> None:
    kafka = open_log(tmp_path / "k", StoredFormat.KAFKA_BATCH)
    good = bytearray(kb.batch([kb.Record(b"k", b"v", ((b"h", b"x"),), 0)], kb.NONE))
    good[-4] = 0x7E  # the header name's length (63) now runs past the record
    kafka.append(bytes(good), count=1, timestamp=0)
    with pytest.raises(UnreadableRecords):
        list(kafka.records_from(0, LIMIT))
    amqp = open_log(tmp_path / "a", StoredFormat.AMQP_MESSAGE)
    amqp.append(b"\x00" * 5)
    with pytest.raises(UnreadableRecords):
        list(amqp.records_from(0, LIMIT))


def test_an_append_wakes_the_watchers_once(tmp_path: Path) -> None:
    async def run() -> None:
        log = open_log(tmp_path, StoredFormat.AMQP_MESSAGE)
        loop = asyncio.get_running_loop()
        waiter, gone = loop.create_future(), loop.create_future()
        log.watch(waiter)
        log.watch(gone)
        log.unwatch(gone)
        assert not waiter.done()
        log.append(b"x" * 20)
        assert waiter.done() and not gone.done()
        again = loop.create_future()
        log.watch(again)
        log.wake()  # the log going away wakes them too
        assert again.done()

    asyncio.run(run())


def test_scan_walks_every_entry_across_segments(tmp_path: Path) -> None:
    log = RecordLog(Log.open(tmp_path / "log", LogConfig(segment_bytes=4096,
                                                         preallocate=False)),
                    StoredFormat.AMQP_MESSAGE)
    for i in range(200):
        log.append(b"%d" % i + b"." * 60)
    assert log.log.segment_count > 2
    assert [e.offset for e in log.scan(0)] == list(range(200))
    assert [e.offset for e in log.scan(150)] == list(range(150, 200))


def test_records_with_multi_byte_lengths_and_deltas_read_back(tmp_path: Path) -> None:
    # Values of 1 KiB and 100 KiB (two- and three-byte length varints), a 300-byte key,
    # and timestamp deltas past one byte: the walk's short cuts and its general path.
    log = open_log(tmp_path, StoredFormat.KAFKA_BATCH)
    records = [kb.Record(b"k" * 300, b"a" * 1024, (), 0),
               kb.Record(b"", b"b" * 100_000, ((b"h" * 200, b"v" * 70),), 70),
               kb.Record(None, b"c" * 63, (), -70_000),
               kb.Record(b"k", b"d" * 64, (), 1)]
    log.append(kb.batch(records, kb.NONE), count=4, timestamp=kb.BASE_TS)
    found = list(log.records_from(0, LIMIT))
    assert [(r.offset, r.timestamp, r.key, bytes(r.value or b""), r.headers) for r in found] == [
        (i, kb.BASE_TS + r.ts_delta, r.key, r.value, tuple(
            (name.decode(), value) for name, value in r.headers))
        for i, r in enumerate(records)]


def test_damaged_batches_raise_only_the_unreadable_error(tmp_path: Path) -> None:
    # Every single-byte change and every truncation of a stored batch (its CRC is not
    # checked on read): read back, or UnreadableRecords, never another exception.
    good = kb.batch([kb.Record(b"key", b"v" * 200, ((b"h", b"x"), (b"n", None)), 0),
                     kb.Record(None, None, (), 5)], kb.NONE)
    damaged = [good[:cut] for cut in range(61, len(good))]
    for at in range(61, len(good)):
        for byte in (0x00, 0x01, 0x7F, 0x80, 0xFF):
            changed = bytearray(good)
            changed[at] = byte
            damaged.append(bytes(changed))
    log = open_log(tmp_path, StoredFormat.KAFKA_BATCH)
    readable = 0
    for payload in damaged:
        base = log.append(payload, count=2, timestamp=0)
        try:
            readable += len(list(log.records(log.read(base, 1)[0], LIMIT)))
        except UnreadableRecords:
            continue
    assert 0 < readable < 2 * len(damaged)


def test_a_log_append_time_batch_gives_every_record_the_batch_time(tmp_path: Path) -> None:
    log = open_log(tmp_path, StoredFormat.KAFKA_BATCH)
    batch = bytearray(kb.batch([kb.Record(b"a", b"1", (), 0), kb.Record(b"b", b"2", (), 70)],
                               kb.NONE))
    struct.pack_into(">h", batch, 21, struct.unpack_from(">h", batch, 21)[0] | 0x08)
    struct.pack_into(">q", batch, 35, 1_800_000_000_000)  # maxTimestamp: the append time
    log.append(bytes(batch), count=2, timestamp=0)
    assert [r.timestamp for r in log.records_from(0, LIMIT)] == [1_800_000_000_000] * 2
