"""Resource alarms: memory accounting of in-memory queues, set/clear, the disk check."""

from __future__ import annotations

from pathlib import Path

from portask.broker.alarms import DISK, MEMORY, Alarms
from portask.broker.amqp.message_store import MemoryStore, Message
from portask.broker.amqp.queues import PriorityStore, Queue

PROPS = b"\x10\x00\x02"


class Recorder:
    def __init__(self, alarms: Alarms) -> None:
        self.seen: list[frozenset[str]] = []
        alarms.subscribe(self.seen.append)


class Taker:
    """A consumer that takes everything and keeps the refs it must settle."""

    tag = "t"
    no_ack = False
    exclusive = False
    priority = 0

    def __init__(self) -> None:
        self.refs: list[object] = []

    def ready(self) -> bool:
        return True

    def deliver(self, queue: object, ref: object, message: Message, redelivered: bool) -> None:
        self.refs.append(ref)

    def credit(self) -> int:
        return 1

    def deliver_batch(self, queue: object, messages: list[Message]) -> int:
        self.refs.extend(messages)
        return len(messages)

    def queue_deleted(self, queue: object) -> None:
        pass


def alarms(tmp_path: Path, watermark: int = 1000) -> Alarms:
    return Alarms(memory_watermark=watermark, disk_free_limit=0, data_dir=tmp_path)


def msg(size: int) -> Message:
    return Message("", "q", PROPS, b"x" * size)


def test_ready_and_unacked_messages_count_until_settled(tmp_path: Path) -> None:
    a = alarms(tmp_path)
    queue = Queue("q", store=MemoryStore(a.memory))
    for _ in range(3):
        queue.publish(msg(100))
    assert a.memory.bytes == 3 * 103
    taker = Taker()
    queue.add_consumer(taker)
    assert a.memory.bytes == 3 * 103  # delivered, not yet acked: still held
    queue.ack(taker.refs[:2])
    assert a.memory.bytes == 103
    queue.remove_consumer(taker)
    queue.requeue(taker.refs[2:])
    assert a.memory.bytes == 103
    assert queue.purge() == 1
    assert a.memory.bytes == 0


def test_a_message_in_several_queues_counts_once(tmp_path: Path) -> None:
    a = alarms(tmp_path)
    one, two = Queue("a", store=MemoryStore(a.memory)), Queue("b", store=MemoryStore(a.memory))
    shared = msg(200)
    one.publish(shared)
    two.publish(shared)
    assert a.memory.bytes == 203
    one.purge()
    assert a.memory.bytes == 203
    two.purge()
    assert a.memory.bytes == 0


def test_unacked_messages_of_a_deleted_queue_are_released_when_settled(tmp_path: Path) -> None:
    a = alarms(tmp_path)
    queue = Queue("q", store=PriorityStore(5, lambda _level: MemoryStore(a.memory)),
                  args=None)
    for i in range(4):
        m = msg(50)
        m.priority = i
        queue.publish(m)
    taker = Taker()
    queue.add_consumer(taker)
    queue.publish(msg(50))  # delivered at once, too
    queue.delete()
    assert a.memory.bytes == 5 * 53
    queue.requeue(taker.refs[:2])  # a channel closing after the delete
    queue.ack(taker.refs[2:4])
    queue.reject(taker.refs[4:])
    assert a.memory.bytes == 0


def test_crossing_the_watermark_sets_and_falling_back_clears(tmp_path: Path) -> None:
    a = alarms(tmp_path, watermark=1000)
    seen = Recorder(a).seen
    queue = Queue("q", store=MemoryStore(a.memory))
    for _ in range(9):
        queue.publish(msg(100))
    assert not a.active
    queue.publish(msg(100))  # 10 * 103 > 1000
    assert a.active == {MEMORY}
    queue.publish(msg(100))
    assert seen == [frozenset({MEMORY})]
    queue.get(no_ack=True)
    assert a.active == {MEMORY}  # 10 messages left: 1030 bytes
    queue.get(no_ack=True)
    assert not a.active  # 927 <= 1000; cleared at once when no event loop runs
    assert seen == [frozenset({MEMORY}), frozenset()]


def test_zero_watermark_never_alarms(tmp_path: Path) -> None:
    a = alarms(tmp_path, watermark=0)
    queue = Queue("q", store=MemoryStore(a.memory))
    for _ in range(100):
        queue.publish(msg(10_000))
    assert a.memory.bytes == 100 * 10_003
    assert not a.active


def test_disk_alarm_follows_free_space(tmp_path: Path) -> None:
    a = Alarms(memory_watermark=0, disk_free_limit=1 << 60, data_dir=tmp_path)
    seen = Recorder(a).seen
    a.check_disk()
    assert a.active == {DISK}
    a.disk_free_limit = 1
    a.check_disk()
    assert not a.active
    assert seen == [frozenset({DISK}), frozenset()]
