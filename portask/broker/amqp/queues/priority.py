"""x-max-priority: a classic queue whose store has one lane per priority level."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from portask.broker.amqp.message_store import Message, MessageStore
from portask.broker.amqp.message_store.message import push_each


class PriorityStore:
    """x-max-priority: one store (lane) per priority level in use, highest served first.

    Refs are (level, lane ref). Levels above the queue's maximum share the top lane,
    which keeps FIFO order within a level, as RabbitMQ does.
    """

    def __init__(self, max_priority: int, lane: Callable[[int], MessageStore],
                 existing: Iterable[int] = ()) -> None:
        self.max_priority = max_priority
        self._make_lane = lane
        self._lanes: dict[int, MessageStore] = {}
        self._order: list[int] = []
        self._track_bytes = False
        for level in existing:
            self._lane(level)

    def _lane(self, level: int) -> MessageStore:
        lane = self._lanes.get(level)
        if lane is None:
            lane = self._make_lane(level)
            lane.track_bytes = self._track_bytes
            self._lanes[level] = lane
            self._order = sorted(self._lanes, reverse=True)
        return lane

    @property
    def track_bytes(self) -> bool:
        return self._track_bytes

    @track_bytes.setter
    def track_bytes(self, value: bool) -> None:
        self._track_bytes = value
        for lane in self._lanes.values():
            lane.track_bytes = value

    def count_bytes(self) -> None:
        self._track_bytes = True
        for lane in self._lanes.values():
            lane.count_bytes()

    @property
    def failed(self) -> bool:
        return any(lane.failed for lane in self._lanes.values())

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    @property
    def bytes(self) -> int:
        return sum(lane.bytes for lane in self._lanes.values())

    def logged(self) -> Iterator[Message]:
        for level in self._order:
            yield from self._lanes[level].logged()

    def _level(self, message: Message) -> int:
        return min(message.priority, self.max_priority)

    def push(self, message: Message, deadline: int, persistent: bool) -> None:
        self._lane(self._level(message)).push(message, deadline, persistent)

    def load(self, messages: list[tuple[Message, int]], all_persistent: bool) -> int:
        return push_each(self, messages, all_persistent)

    def push_delivered(self, message: Message, deadline: int, persistent: bool) -> Any:
        level = self._level(message)
        return level, self._lane(level).push_delivered(message, deadline, persistent)

    def pop(self) -> tuple[Any, Message, bool, int] | None:
        for level in self._order:
            lane = self._lanes[level]
            if len(lane):
                item = lane.pop()
                if item is not None:
                    ref, message, redelivered, deadline = item
                    return (level, ref), message, redelivered, deadline
        return None

    def peek(self) -> Iterator[tuple[Message, bool, int]]:
        for level in self._order:
            yield from self._lanes[level].peek()

    def peek_deadline(self) -> int:
        for level in self._order:
            lane = self._lanes[level]
            if len(lane):
                return lane.peek_deadline()
        return 0

    def _by_level(self, refs: Iterable[Any]) -> dict[int, list[Any]]:
        grouped: dict[int, list[Any]] = {}
        for level, ref in refs:
            grouped.setdefault(level, []).append(ref)
        return grouped

    def requeue(self, refs: list[Any]) -> None:
        for level, lane_refs in self._by_level(refs).items():
            self._lanes[level].requeue(lane_refs)

    def ack(self, refs: Iterable[Any]) -> None:
        for level, lane_refs in self._by_level(refs).items():
            self._lanes[level].ack(lane_refs)

    def forget(self, refs: Iterable[Any]) -> None:
        for level, lane_refs in self._by_level(refs).items():
            self._lanes[level].forget(lane_refs)

    def fetch(self, ref: Any) -> Message:
        level, lane_ref = ref
        return self._lanes[level].fetch(lane_ref)

    def purge(self) -> int:
        return sum(lane.purge() for lane in self._lanes.values())

    def delete(self) -> None:
        for lane in self._lanes.values():
            lane.delete()


