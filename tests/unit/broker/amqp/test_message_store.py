"""The durable queue store: FIFO on a segment log, settlement bitmap, recovery."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from portask.broker.amqp.message_store import LogStore, Message, QueueStorage, StoreFailed
from portask.broker.amqp.message_store.log_store import _ranges
from portask.broker.amqp.queues import Queue
from portask.storage.directory import LogDirectory
from portask.storage.log import LogConfig


def storage(root: Path, segment_bytes: int = 1 << 20) -> QueueStorage:
    logs = LogDirectory(root, LogConfig(segment_bytes=1 << 20), flush_ms=None,
                        retention_check_ms=60_000)
    return QueueStorage(logs, fsync_always=False, segment_bytes=segment_bytes)


def message(body: bytes, persistent: bool = True) -> Message:
    return Message("ex", "rk", b"\x10\x00\x02", body, persistent=persistent)


def lane(root: Path, **kwargs: int) -> tuple[QueueStorage, LogStore]:
    queues = storage(root, **kwargs)
    return queues, queues.open_lane("/", "q", 0)


def pop_body(store: LogStore) -> tuple[bytes, bool]:
    item = store.pop()
    assert item is not None
    _ref, msg, redelivered, _deadline = item
    return bytes(msg.body), redelivered


def test_fifo_ack_and_recovery_after_a_crash(tmp_path: Path) -> None:
    queues, store = lane(tmp_path)
    for i in range(10):
        store.push(message(b"%d" % i), 0, True)
    store.push(message(b"transient", persistent=False), 0, False)
    refs = [store.pop()[0] for _ in range(4)]  # type: ignore[index]
    store.ack([refs[0], refs[2]])
    queues.commit()
    assert len(store) == 7
    # No close: the next open sees the files exactly as a kill -9 leaves them.
    _queues2, again = lane(tmp_path)
    assert len(again) == 8  # 11 - 2 acked - 1 transient
    got = [pop_body(again) for _ in range(8)]
    assert got == [(b"1", True), (b"3", True)] + [(b"%d" % i, False) for i in range(4, 10)]
    assert again.pop() is None


def test_requeued_messages_come_first_in_offset_order(tmp_path: Path) -> None:
    _queues, store = lane(tmp_path)
    for i in range(5):
        store.push(message(b"%d" % i), 0, True)
    refs = [store.pop()[0] for _ in range(3)]  # type: ignore[index]
    store.requeue([refs[2], refs[0]])
    assert [pop_body(store) for _ in range(4)] == [
        (b"0", True), (b"2", True), (b"3", False), (b"4", False)]


def test_settled_segments_and_ack_records_are_deleted(tmp_path: Path) -> None:
    queues, store = lane(tmp_path, segment_bytes=8192)
    for _ in range(200):
        store.push(message(b"x" * 500), 0, True)
    queues.commit()
    messages = store._log
    assert messages.segment_count > 10
    while len(store):
        ref = store.pop()[0]  # type: ignore[index]
        store.ack([ref])
        queues.commit()
    # Whole segments go; the start moves to the low-water mark when one does.
    assert messages.segment_count == 1
    assert messages.start_offset > 180
    assert store._acks.segment_count == 1
    _q, again = lane(tmp_path, segment_bytes=8192)
    assert len(again) == 0


def test_purge_is_durable(tmp_path: Path) -> None:
    queues, store = lane(tmp_path)
    for i in range(1000):
        store.push(message(b"%d" % i), 0, True)
    assert store.purge() == 1000
    store.push(message(b"after"), 0, True)
    queues.commit()
    _q, again = lane(tmp_path)
    assert len(again) == 1
    assert pop_body(again) == (b"after", False)


def test_ack_log_naming_a_lost_tail_is_voided(tmp_path: Path) -> None:
    """A machine crash can lose the message log's tail while the ack log kept acks of
    it; the offsets are reused, so those acks must not settle the new messages."""
    queues, store = lane(tmp_path)
    for i in range(6):
        store.push(message(b"%d" % i), 0, True)
    refs = [store.pop()[0] for _ in range(6)]  # type: ignore[index]
    store.ack(refs[4:])
    queues.commit()
    store._log.truncate_to(4)  # what recovery does with an unsynced tail
    queues2, again = lane(tmp_path)
    assert len(again) == 4
    again.push(message(b"new4"), 0, True)
    queues2.commit()
    _q, third = lane(tmp_path)
    assert [pop_body(third)[0] for _ in range(5)] == [b"0", b"1", b"2", b"3", b"new4"]


def test_ready_bytes_are_counted_after_recovery(tmp_path: Path) -> None:
    queues, store = lane(tmp_path)
    for size in (10, 20, 30):
        store.push(message(b"x" * size), 0, True)
    queues.commit()
    _q, again = lane(tmp_path)
    again.track_bytes = True
    assert again.bytes == 60
    pop_body(again)
    assert again.bytes == 50


def test_deleted_queue_directory_is_removed(tmp_path: Path) -> None:
    queues, store = lane(tmp_path)
    store.push(message(b"x"), 0, True)
    queues.commit()
    directory = tmp_path / queues.queue_dir("/", "q")
    assert directory.is_dir()
    store.delete()
    queues.remove_queue("/", "q")
    assert not directory.exists()


def test_queue_directory_names_are_safe() -> None:
    assert QueueStorage.queue_dir("/", "a/b") == "amqp/%2F/a%2Fb"
    assert QueueStorage.queue_dir("/", "..") == "amqp/%2F/%2E%2E"
    long_name = QueueStorage.queue_dir("/", "x" * 255)
    assert len(long_name.rsplit("/", 1)[1]) < 200


@pytest.mark.parametrize(("offsets", "expected"), [
    ([5], [5, 1]),
    ([3, 1, 2], [1, 3]),
    ([1, 2, 4, 4, 5, 9], [1, 2, 4, 2, 9, 1]),
])
def test_ranges(offsets: list[int], expected: list[int]) -> None:
    assert _ranges(offsets) == expected


class Disk:
    """Makes the storage layer's writes fail with ENOSPC while ``full``.

    Segments and indexes are written with os.pwritev/os.pwrite; checkpoints (os.write)
    keep working, as a real full disk often lets a small file through.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        real_pwritev, real_pwrite = os.pwritev, os.pwrite

        def pwritev(fd: int, buffers: Sequence[bytes], offset: int) -> int:
            self._check()
            return real_pwritev(fd, buffers, offset)

        def pwrite(fd: int, data: bytes, offset: int) -> int:
            self._check()
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(os, "pwritev", pwritev)
        monkeypatch.setattr(os, "pwrite", pwrite)

    def _check(self) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class Publisher:
    """A confirming publisher as the vhost names it to the store during a publish."""

    def __init__(self, queues: QueueStorage) -> None:
        self.queues = queues
        self.publish_seq = 0
        self.failed_from: list[int] = []

    def publish(self, queue: Queue, body: bytes) -> bool:
        self.publish_seq += 1
        self.queues.publisher = self
        try:
            return queue.publish(message(body))
        finally:
            self.queues.publisher = None

    def write_failed(self, first_seq: int) -> None:
        self.failed_from.append(first_seq)


def bodies(store: LogStore) -> list[bytes]:
    return [pop_body(store)[0] for _ in range(len(store))]


def test_a_failed_write_costs_only_its_publishes(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    disk = Disk(monkeypatch)
    data = tmp_path / "data"
    queues, store = lane(data)
    queue = Queue("q", durable=True, store=store)
    publisher = Publisher(queues)
    assert publisher.publish(queue, b"a") and publisher.publish(queue, b"b")
    queues.commit()
    disk.full = True
    assert publisher.publish(queue, b"c")  # taken; written at the commit point
    assert publisher.publish(queue, b"d")
    queues.commit()
    assert publisher.failed_from == [3]  # c and d are nacked, a and b stay confirmed
    assert store.failed and len(store) == 2
    crash_copy = tmp_path / "crash"
    shutil.copytree(data, crash_copy)  # the files as a kill -9 now would leave them
    # Confirmed messages are delivered and acked while the disk is still full.
    refs = []
    for expected in (b"a", b"b"):
        ref, msg, _redelivered, _deadline = store.pop()  # type: ignore[misc]
        assert bytes(msg.body) == expected
        refs.append(ref)
    assert store.pop() is None
    queue.ack(refs)
    queues.commit()  # the ack record cannot be written yet: kept for later
    disk.full = False
    _q, crashed = lane(crash_copy)
    assert bodies(crashed) == [b"a", b"b"]
    assert publisher.publish(queue, b"e")
    queues.commit()
    assert publisher.failed_from == [3] and not store.failed
    assert bodies(store) == [b"e"]
    _queues2, again = lane(data)  # kill -9 and restart
    assert bodies(again) == [b"e"]
    assert again.pop() is None


@pytest.mark.parametrize("lost", [1, 3])
def test_offsets_of_a_failed_write_are_skipped_even_if_their_settlement_is_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lost: int) -> None:
    disk = Disk(monkeypatch)
    data = tmp_path / "data"
    queues, store = lane(data)
    store.push(message(b"a"), 0, True)
    queues.commit()
    disk.full = True
    for _ in range(lost):
        store.push(message(b"lost"), 0, True)
    queues.commit()
    disk.full = False
    store.push(message(b"b"), 0, True)
    queues.commit()
    # The next append began with one empty entry spanning the lost offsets.
    entries = [(r.offset, r.count, len(r.payload)) for r in store._log.read(0, 1 << 20)]
    assert entries[1:] == [(1, lost, 0), (1 + lost, 1, entries[0][2])]
    # A crash that loses the whole ack log: the void offsets count as ready at first,
    # and are passed over (and uncounted) when the reader reaches them.
    shutil.rmtree(data / "amqp" / "%2F" / "q" / "a0")
    _q, again = lane(data)
    assert len(again) == 2 + lost
    assert again.bytes == 2  # a queue with a byte limit counts them right too
    assert pop_body(again)[0] == b"a"
    assert pop_body(again)[0] == b"b"
    assert again.pop() is None and len(again) == 0


def test_a_publish_to_a_waiting_consumer_is_written_first_after_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = Disk(monkeypatch)
    queues, store = lane(tmp_path / "data")
    disk.full = True
    store.push(message(b"x"), 0, True)
    queues.commit()
    assert store.failed and len(store) == 0
    # Still full: refused before anything could be handed to the consumer.
    with pytest.raises(StoreFailed):
        store.push_delivered(message(b"y"), 0, True)
    assert len(store) == 0 and store._cursor == 0
    disk.full = False
    ref = store.push_delivered(message(b"z"), 0, True)
    assert not store.failed
    assert store._log.end_offset == ref + 1  # on disk before the consumer gets it
    assert bytes(store.fetch(ref).body) == b"z"
    store.ack([ref])
    queues.commit()
    assert store.pop() is None and len(store) == 0


def test_a_ref_handed_out_before_a_failed_write_stays_usable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = Disk(monkeypatch)
    data = tmp_path / "data"
    queues, store = lane(data)
    ref = store.push_delivered(message(b"early"), 0, True)  # a consumer was waiting
    disk.full = True
    queues.commit()  # its write fails after the delivery went out
    assert store.failed
    assert bytes(store.fetch(ref).body) == b"early"  # reject-to-DLX, recover still work
    store.requeue([ref])  # nacked to its publisher, so it does not come back
    assert len(store) == 0 and store.pop() is None
    store.ack([ref])
    disk.full = False
    later = store.push_delivered(message(b"later"), 0, True)
    assert later > ref  # the offset a consumer held is never reused
    store.ack([later])
    queues.commit()
    _q, again = lane(data)
    assert len(again) == 0


def test_acks_while_the_disk_is_full_free_segments_and_are_written_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = Disk(monkeypatch)
    data = tmp_path / "data"
    queues, store = lane(data, segment_bytes=8192)
    for _ in range(100):
        store.push(message(b"x" * 500), 0, True)
    queues.commit()
    assert store._log.segment_count > 5
    disk.full = True
    store.push(message(b"refused"), 0, True)
    queues.commit()
    refs = []
    while (item := store.pop()) is not None:
        refs.append(item[0])
    assert len(refs) == 100
    store.ack(refs)
    queues.commit()
    # The ack record failed, but settled segments are deleted: that is what frees a
    # full disk.
    assert store._log.segment_count == 1
    disk.full = False
    queues.commit()  # no new work on the queue: the kept ack record is retried anyway
    _q, again = lane(data, segment_bytes=8192)
    assert len(again) == 0


def test_each_publisher_is_nacked_from_its_first_unwritten_publish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = Disk(monkeypatch)
    queues, store = lane(tmp_path / "data")
    queue = Queue("q", durable=True, store=store)
    first, second = Publisher(queues), Publisher(queues)
    first.publish_seq = second.publish_seq = 10
    first.publish(queue, b"1-11")
    assert store.pop() is not None  # a consumer reads it: written before this commit point
    second.publish(queue, b"2-11")
    first.publish(queue, b"1-12")
    second.publish(queue, b"2-12")
    disk.full = True
    queues.commit()
    assert first.failed_from == [12] and second.failed_from == [11]




def test_settled_offsets_of_a_failed_write_ahead_of_the_reader_are_trimmed_safely(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = Disk(monkeypatch)
    queues, store = lane(tmp_path / "data", segment_bytes=8192)
    for _ in range(50):
        store.push(message(b"x" * 500), 0, True)
    queues.commit()
    store.ack([store.pop()[0] for _ in range(50)])  # type: ignore[index]
    queues.commit()
    disk.full = True
    for _ in range(40):
        store.push(message(b"lost" * 125), 0, True)
    queues.commit()
    disk.full = False
    # Too large for what is left of the segment, where the void entry still fits: the
    # new records start the next segment.
    for i in range(3):
        store.push(message(b"%03d" % i + b"y" * 5997), 0, True)
    queues.commit()
    # The low-water mark passed the failed offsets, which the reader never reached,
    # and the segment holding them is gone.
    assert store._log.start_offset == 90
    assert [body[:3] for body in bodies(store)] == [b"000", b"001", b"002"]


def test_with_fsync_always_a_failed_fsync_nacks_what_it_covered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logs = LogDirectory(tmp_path / "data", LogConfig(segment_bytes=1 << 20), flush_ms=None,
                        retention_check_ms=60_000)
    queues = QueueStorage(logs, fsync_always=True, segment_bytes=1 << 20)
    store = queues.open_lane("/", "q", 0)
    queue = Queue("q", durable=True, store=store)
    publisher = Publisher(queues)
    publisher.publish(queue, b"a")
    queues.commit()
    real_fdatasync = os.fdatasync

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fdatasync", failing)
    publisher.publish(queue, b"b")
    publisher.publish(queue, b"c")
    queues.commit()  # appended, but the fsync that a confirm waits for failed
    assert publisher.failed_from == [2]
    monkeypatch.setattr(os, "fdatasync", real_fdatasync)
    publisher.publish(queue, b"d")
    queues.commit()
    assert publisher.failed_from == [2]
    assert bodies(store) == [b"a", b"d"]
    _q, again = lane(tmp_path / "data")
    assert bodies(again) == [b"a", b"d"]


def test_a_disk_hovering_at_full_is_logged_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    disk = Disk(monkeypatch)
    queues, store = lane(tmp_path / "data")
    for _ in range(5):  # a small write fits, the next does not, and again
        disk.full = True
        store.push(message(b"x"), 0, True)
        queues.commit()
        disk.full = False
        store.push(message(b"y"), 0, True)
        queues.commit()
    messages = [r.getMessage() for r in caplog.records if r.name == "portask.amqp"]
    assert messages == [
        "queue cannot write its log: the publishes it carried are nacked; later ones "
        "are tried again",
        "cannot write the ack log of a queue; retrying",
        "queue writes its log again",
        "ack log of a queue written again",
    ]
    assert not any(r.exc_info for r in caplog.records)
    assert len(store) == 5
