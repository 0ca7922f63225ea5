"""The durable queue store: FIFO on a segment log, settlement bitmap, recovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from portask.broker.message_store import LogStore, Message, QueueStorage, _ranges
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


def test_a_failed_write_refuses_further_publishes(tmp_path: Path) -> None:
    from portask.broker.queues import Queue

    queues, store = lane(tmp_path)
    queue = Queue("q", durable=True, store=store)
    assert queue.publish(message(b"ok"))
    assert queues.commit()

    def broken(*_args: object, **_kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    store._log.append_many = broken  # type: ignore[method-assign]
    assert queue.publish(message(b"lost"))  # accepted, written at the commit point
    assert not queues.commit()  # which fails: the connection nacks what it has not confirmed
    assert not queue.publish(message(b"refused"))
    _q, again = lane(tmp_path)
    assert [pop_body(again)[0] for _ in range(len(again))] == [b"ok"]
