"""Issue 9, item 4: batches whose compressed records are not what their attributes say.

Produce answers CORRUPT_MESSAGE for that partition and stores nothing, as Kafka does;
and records already stored that the broker cannot read (written before this check
existed, or past a since-lowered limit) never break a later ListOffsets, fetch or
compaction pass. The batches are built with kafka-python's encoder and requests with
kio, both independent of Portask; real clients (confluent-kafka) read the results.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import os
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import crc32c
import lz4.frame
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from portask.storage import Log
from tests.broker_process import BrokerProcess, start_broker
from tests.integration.kafka.clients import bootstrap, create_topic
from tests.integration.kafka.wire_client import WireClient, encode_request, request_types

PRODUCE, FETCH, LIST_OFFSETS = 0, 1, 2
CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, INVALID_RECORD = 2, 10, 87
CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def build(values: list[bytes], codec: int = 0, keys: list[bytes] | None = None,
          first_ts: int = 1_000_000) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=False, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )
    for i, value in enumerate(values):
        key = keys[i] if keys else None
        builder.append(i, timestamp=first_ts + i, key=key, value=value, headers=[])
    return bytes(builder.build())


def with_records(batch: bytes, codec: int, body: bytes) -> bytes:
    """The batch with other bytes as its records and the codec bits set; the CRC is valid."""
    out = bytearray(batch[:61]) + body
    struct.pack_into(">i", out, 8, len(out) - 12)
    attributes = struct.unpack_from(">h", out, 21)[0]
    struct.pack_into(">h", out, 21, (attributes & ~0x07) | codec)
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    return bytes(out)


def garbage_forms(codec: int) -> dict[str, bytes]:
    """Records bytes that are not ``codec`` data, each in a valid-CRC batch."""
    plain = build([b"value %d" % i for i in range(5)])
    valid = bytes(build([b"value %d" % i for i in range(5)], codec)[61:])
    other = gzip.compress(plain[61:]) if codec != 1 else lz4.frame.compress(plain[61:])
    magic = {
        1: b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff",
        2: b"\x82SNAPPY\x00" + bytes(8) + (40).to_bytes(4, "big"),
        3: (0x184D2204).to_bytes(4, "little") + b"\x64\x40\xa7",
        4: (0xFD2FB528).to_bytes(4, "little"),
    }[codec]
    bodies = {
        "random bytes": os.urandom(64),
        "codec magic then junk": magic + b"junk" * 10,
        "another codec's data": other,
        "truncated stream": valid[: len(valid) // 2],
        "uncompressed records": plain[61:],
    }
    return {name: with_records(plain, codec, body) for name, body in bodies.items()}


def produce(topic: str, partitions: dict[int, bytes], version: int = 9) -> object:
    m = request_types(PRODUCE, version)
    return m.ProduceRequest(
        transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=5),
        topic_data=(m.TopicProduceData(name=topic, partition_data=tuple(
            m.PartitionProduceData(index=p, records=data) for p, data in partitions.items()
        )),),
    )


def list_offsets(topic: str, partition: int, timestamp: int) -> object:
    m = request_types(LIST_OFFSETS, 7)
    return m.ListOffsetsRequest(
        replica_id=-1, isolation_level=0,
        topics=(m.ListOffsetsTopic(name=topic, partitions=(
            m.ListOffsetsPartition(partition_index=partition, current_leader_epoch=-1,
                                   timestamp=timestamp),
        )),),
    )


def fetch(topic: str, partition: int, offset: int) -> object:
    m = request_types(FETCH, 12)
    return m.FetchRequest(
        max_wait=datetime.timedelta(0), min_bytes=1, max_bytes=1 << 20, isolation_level=0,
        session_id=0, session_epoch=-1, rack_id="", forgotten_topics_data=(),
        topics=(m.FetchTopic(topic=topic, partitions=(
            m.FetchPartition(partition=partition, fetch_offset=offset,
                             partition_max_bytes=1 << 20),
        )),),
    )


class Wire:
    """One connection; every call asserts the broker answered instead of closing it."""

    def __init__(self, port: int) -> None:
        self.client = WireClient(port)
        self.correlation = 0

    def call(self, request: object, api_key: int, version: int) -> object:
        self.correlation += 1
        self.client.send(encode_request(request, self.correlation))
        cid, response = self.client.read_response(api_key, version)
        assert cid == self.correlation
        return response

    def produce(self, topic: str, partitions: dict[int, bytes]) -> dict[int, object]:
        resp = self.call(produce(topic, partitions), PRODUCE, 9)
        return {p.index: p for p in resp.responses[0].partition_responses}

    def offset_for(self, topic: str, partition: int, timestamp: int) -> tuple[int, int, int]:
        resp = self.call(list_offsets(topic, partition, timestamp), LIST_OFFSETS, 7)
        p = resp.topics[0].partitions[0]
        return p.error_code, p.offset, p.timestamp

    def fetch(self, topic: str, partition: int, offset: int) -> tuple[int, int, bytes]:
        resp = self.call(fetch(topic, partition, offset), FETCH, 12)
        p = resp.responses[0].partitions[0]
        return p.error_code, p.high_watermark, p.records or b""

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def wire(kafka_broker: BrokerProcess) -> Iterator[Wire]:
    client = Wire(kafka_broker.kafka_port)
    yield client
    client.close()


@pytest.mark.parametrize("codec", list(CODECS.values()), ids=list(CODECS))
def test_garbage_compressed_records_get_corrupt_message_and_nothing_is_stored(
    kafka_broker: BrokerProcess, wire: Wire, topic_name: Callable[[], str], codec: int
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 2)
    for form, bad in garbage_forms(codec).items():
        # One request, two partitions: the good one is stored, the bad one answered
        # CORRUPT_MESSAGE on its own.
        answers = wire.produce(topic, {0: build([b"good"]), 1: bad})
        assert answers[0].error_code == 0, form
        assert answers[1].error_code == CORRUPT_MESSAGE, form
        assert answers[1].base_offset == -1, form
        assert wire.fetch(topic, 1, 0) == (0, 0, b""), form
    assert wire.offset_for(topic, 0, -1)[1] == len(garbage_forms(codec))
    # ListOffsets by timestamp on the refused partition answers; so does a good batch
    # of the same codec sent on the same connection afterwards.
    assert wire.offset_for(topic, 1, 0) == (0, -1, -1)
    stored = wire.produce(topic, {1: build([b"a", b"b", b"c"], codec, first_ts=5000)})
    assert stored[1].error_code == 0 and stored[1].base_offset == 0
    assert wire.offset_for(topic, 1, 5001) == (0, 1, 5001)
    assert "Traceback" not in kafka_broker.stderr_text()


def test_records_claiming_more_than_their_bytes_hold_get_corrupt_message(
    wire: Wire, kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    lying = bytearray(build([b"x"]))
    struct.pack_into(">i", lying, 57, 50_000)  # recordsCount
    struct.pack_into(">I", lying, 17, crc32c.crc32c(bytes(lying[21:])))
    assert wire.produce(topic, {0: bytes(lying)})[0].error_code == CORRUPT_MESSAGE
    assert wire.fetch(topic, 0, 0)[1] == 0


def test_a_batch_expanding_past_the_limit_gets_message_too_large(
    wire: Wire, kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    # 65 MiB of zeros in one record: a few KiB of zstd, past the 64 MiB default.
    bomb = build([bytes(65 << 20)], CODECS["zstd"])
    assert len(bomb) < 16 << 10
    answer = wire.produce(topic, {0: bomb})[0]
    assert answer.error_code == MESSAGE_TOO_LARGE
    assert "more than 67108864 bytes" in answer.error_message
    assert wire.fetch(topic, 0, 0)[1] == 0


def test_control_batches_from_clients_get_invalid_record(
    wire: Wire, kafka_broker: BrokerProcess, topic_name: Callable[[], str]
) -> None:
    topic = topic_name()
    create_topic(kafka_broker.kafka_port, topic, 1)
    marker = bytearray(build([b"\x00\x00\x00\x01"]))
    struct.pack_into(">h", marker, 21, 0x30)  # transactional | control
    struct.pack_into(">qh", marker, 45, 7, 0)  # a producer id and epoch
    struct.pack_into(">I", marker, 17, crc32c.crc32c(bytes(marker[21:])))
    answer = wire.produce(topic, {0: bytes(marker)})[0]
    assert answer.error_code == INVALID_RECORD
    assert wire.fetch(topic, 0, 0)[1] == 0


def _unreadable_batch(codec: int, base_offset: int, first_ts: int, count: int) -> bytes:
    """A batch as an earlier broker stored it: valid CRC, records that do not decode."""
    batch = bytearray(with_records(build([b"v"] * count, first_ts=first_ts), codec,
                                   b"not compressed at all" * 3))
    struct.pack_into(">q", batch, 0, base_offset)
    return bytes(batch)


def _create_topic_and_stop(data_dir: Path, topic: str, config: dict[str, str]) -> None:
    broker = start_broker(data_dir)
    try:
        create_topic(broker.kafka_port, topic, 1, config)
    finally:
        broker.stop()


def _append_to_partition_log(data_dir: Path, topic: str, batches: list[bytes]) -> None:
    """Write batches into the stopped broker's partition log, the way produce stores them."""
    plog = Log.open(data_dir / "logs" / "topics" / f"{topic}-0")
    try:
        for batch in batches:
            count = struct.unpack_from(">i", batch, 23)[0] + 1
            max_ts = struct.unpack_from(">q", batch, 35)[0]
            assert plog.append(batch, count=count, timestamp=max_ts) == struct.unpack_from(
                ">q", batch, 0)[0]
    finally:
        plog.close()


def test_stored_unreadable_batches_never_break_list_offsets_or_fetch(
    tmp_path: Path, topic_name: Callable[[], str]
) -> None:
    """Before this fix such batches were stored; every ListOffsets by timestamp on the
    partition then closed the connection (CodecError). Each codec's reader is hit."""
    data_dir = tmp_path / "data"
    topic = topic_name()
    _create_topic_and_stop(data_dir, topic, {})
    # Offsets 0-2 gzip, 3-5 snappy, 6-8 lz4, 9-11 zstd; timestamps 10_000 apart.
    _append_to_partition_log(data_dir, topic, [
        _unreadable_batch(codec, 3 * i, 10_000 * (i + 1), 3) for i, codec in
        enumerate(CODECS.values())
    ])
    broker = start_broker(data_dir)
    try:
        with Wire(broker.kafka_port) as wire:
            # Inside each batch: the answer is the batch (its first offset, its timestamp).
            for i in range(4):
                ts = 10_000 * (i + 1)
                assert wire.offset_for(topic, 0, ts) == (0, 3 * i, ts + 2)
            assert wire.offset_for(topic, 0, 99_999)[:2] == (0, -1)
            assert wire.offset_for(topic, 0, -1)[:2] == (0, 12)
            error, high_watermark, raw = wire.fetch(topic, 0, 0)
            assert (error, high_watermark) == (0, 12) and b"not compressed at all" in raw
            # New data lands after them, and real clients get answers about the partition.
            new = build([b"new"], 3, first_ts=90_000)
            assert wire.produce(topic, {0: new})[0].base_offset == 12
            assert wire.offset_for(topic, 0, 90_000) == (0, 12, 90_000)
        consumer = Consumer({"bootstrap.servers": bootstrap(broker.kafka_port), "group.id": "g"})
        try:
            for when, expected in ((20_001, 3), (25_000, 6), (40_000, 9)):
                (found,) = consumer.offsets_for_times([TopicPartition(topic, 0, when)], 10)
                assert (found.error, found.offset) == (None, expected)
        finally:
            consumer.close()
        log = broker.stderr_text()
        assert "Traceback" not in log
        assert "stored batch unreadable; answering at batch granularity" in log
    finally:
        broker.stop()


def test_compaction_keeps_unreadable_batches_and_compacts_the_rest(
    tmp_path: Path, topic_name: Callable[[], str]
) -> None:
    data_dir = tmp_path / "data"
    topic = topic_name()
    env = {"PORTASK_STORAGE_RETENTION_CHECK_MS": "300"}
    _create_topic_and_stop(data_dir, topic, {"cleanup.policy": "compact", "segment.bytes": "4096"})
    _append_to_partition_log(data_dir, topic, [_unreadable_batch(CODECS["lz4"], 0, 1000, 2)])
    broker = start_broker(data_dir, env=env)
    try:
        producer = Producer({"bootstrap.servers": bootstrap(broker.kafka_port), "linger.ms": 0})
        for i in range(60):
            producer.produce(topic, b"v%03d-" % i + b"x" * 100, key=b"k%d" % (i % 3), partition=0)
            producer.flush(5)
        with Wire(broker.kafka_port) as wire:
            deadline = time.monotonic() + 20
            while True:
                _, high_watermark, raw = wire.fetch(topic, 0, 0)
                kept = _record_offsets(raw)
                if len(kept) < 40 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
        assert high_watermark == 62
        assert raw.startswith(_unreadable_batch(CODECS["lz4"], 0, 1000, 2)[:12])
        assert len(kept) < 40  # compacted: most older values per key are gone
        # A real consumer reads the compacted records after the unreadable batch.
        latest = _consume_keys_from(broker.kafka_port, topic, 2)
        assert latest == {b"k%d" % k: b"v%03d-" % (57 + k) + b"x" * 100 for k in range(3)}
        log = broker.stderr_text()
        assert "compaction kept batches whose records it cannot read" in log
        assert "Traceback" not in log and "compaction pass failed" not in log
    finally:
        broker.stop()


def _consume_keys_from(port: int, topic: str, offset: int) -> dict[bytes, bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap(port), "group.id": "g",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, offset)])
    latest: dict[bytes, bytes] = {}
    deadline = time.monotonic() + 15
    try:
        while latest.get(b"k2", b"")[:4] != b"v059" and time.monotonic() < deadline:
            for m in consumer.consume(100, 0.5):
                assert m.error() is None, m.error()
                latest[m.key()] = m.value()
    finally:
        consumer.close()
    return latest


def _record_offsets(raw: bytes) -> list[int]:
    """Offsets of the records kafka-python can read in a fetch answer (unreadable skipped)."""
    offsets = []
    pos = 0
    while pos + 61 <= len(raw):
        size = struct.unpack_from(">i", raw, pos + 8)[0] + 12
        batch = DefaultRecordBatch(raw[pos : pos + size])
        # The unreadable batch: kafka-python cannot decode it either.
        with contextlib.suppress(Exception):
            offsets.extend(record.offset for record in batch)
        pos += size
    return offsets
