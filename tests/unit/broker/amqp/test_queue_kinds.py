"""Queue kinds behind the one interface: what differs between a classic queue and a
stream is answered by the kind, with RabbitMQ's refusals, not by the caller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portask.broker.amqp.errors import NotImplementedFeature, PreconditionFailed
from portask.broker.amqp.message_store import Message, QueueStorage
from portask.broker.amqp.queue_args import parse_queue_arguments
from portask.broker.amqp.queues import AmqpQueue, Queue, StreamQueue
from portask.storage.directory import LogDirectory
from portask.storage.log import LogConfig


class Reader:
    """A consumer that takes everything and remembers what it was given."""

    tag = "c"
    no_ack = False
    exclusive = False
    priority = 0

    def __init__(self) -> None:
        self.got: list[tuple[Any, bytes]] = []

    def ready(self) -> bool:
        return True

    def deliver(self, queue: AmqpQueue, ref: Any, message: Message, redelivered: bool) -> None:
        self.got.append((ref, bytes(message.body)))

    def credit(self) -> int:
        return 1

    def deliver_batch(self, queue: AmqpQueue, messages: list[Message]) -> int:
        self.got.extend((message, bytes(message.body)) for message in messages)
        return len(messages)

    def queue_deleted(self, queue: AmqpQueue) -> None:
        pass


def stream(root: Path) -> StreamQueue:
    logs = LogDirectory(root, LogConfig(segment_bytes=1 << 20), flush_ms=None,
                        retention_check_ms=60_000)
    storage = QueueStorage(logs, fsync_always=False, segment_bytes=1 << 20)
    arguments = {"x-queue-type": "stream"}
    args = parse_queue_arguments(arguments, queue="s", vhost="/", durable=True,
                                 exclusive=False, auto_delete=False)
    return StreamQueue("s", vhost="/", arguments=arguments, args=args,
                       log=storage.open_stream("/", "s", segment_bytes=None, max_age_ms=None,
                                               max_bytes=None),
                       storage=storage)


def message(body: bytes) -> Message:
    return Message("", "s", b"\x00\x00", body, persistent=True)


def test_a_stream_consumer_starts_where_its_offset_says_and_keeps_the_messages(
        tmp_path: Path) -> None:
    queue = stream(tmp_path)
    assert isinstance(queue, AmqpQueue) and queue.delivers_offsets
    for body in (b"a", b"b", b"c"):
        assert queue.publish(message(body))
    first, second = Reader(), Reader()
    queue.add_consumer(first, queue.consumer_start({"x-stream-offset": "first"}, False, 10))
    queue.add_consumer(second, queue.consumer_start({"x-stream-offset": 2}, False, 10))
    assert first.got == [(0, b"a"), (1, b"b"), (2, b"c")]
    assert second.got == [(2, b"c")]
    queue.ack([0, 1, 2])
    assert queue.message_count == 3  # acks return credit; nothing is removed


def test_a_stream_refuses_what_rabbitmq_refuses_with_its_texts(tmp_path: Path) -> None:
    queue = stream(tmp_path)
    with pytest.raises(NotImplementedFeature) as no_ack:
        queue.consumer_start({}, True, 10)
    assert no_ack.value.text == ("automatic acknowledgement not supported by stream "
                                 "queues queue 's' in vhost '/'")
    with pytest.raises(PreconditionFailed) as no_prefetch:
        queue.consumer_start({}, False, 0)
    assert no_prefetch.value.text == ("consumer prefetch count is not set for "
                                      "'queue 's' in vhost '/''")
    with pytest.raises(NotImplementedFeature) as get:
        queue.get(False)
    assert get.value.text == "basic.get not supported by stream queues queue 's' in vhost '/'"
    with pytest.raises(NotImplementedFeature) as purge:
        queue.purge()
    assert purge.value.text == "queue.purge not supported by stream queues queue 's' in vhost '/'"


def test_a_classic_queue_answers_the_same_calls_its_own_way() -> None:
    queue = Queue("q")
    assert isinstance(queue, AmqpQueue) and not queue.delivers_offsets
    assert queue.consumer_start({"x-stream-offset": "first"}, True, 0) is None
    assert queue.publish(message(b"x"))
    got = queue.get(False)
    assert got is not None
    ref, taken, _ = got
    assert bytes(taken.body) == b"x"
    assert queue.purge() == 0  # the one message is unacked, not ready
    queue.requeue([ref])
    assert queue.purge() == 1
