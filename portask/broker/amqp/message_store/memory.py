"""MemoryStore: where a non-durable queue's ready messages wait.

``MemoryStore`` is a deque of small entries; non-durable queues use it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from portask.broker.alarms import UNMETERED, MemoryUse
from portask.broker.amqp.message_store.message import Message


class _Entry:
    """A message with per-queue state: a TTL deadline or the redelivered flag.

    Most messages have neither and are stored bare: with a backlog, every extra object
    per message is more for the cyclic garbage collector to walk on each pass.
    """

    __slots__ = ("deadline", "message", "redelivered")

    def __init__(self, message: Message, deadline: int, redelivered: bool = False) -> None:
        self.message = message
        self.deadline = deadline
        self.redelivered = redelivered


class MemoryStore:
    """Ready messages in arrival order; requeued messages go back to the front.

    Refs are the stored items themselves (a ``Message``, or an ``_Entry`` wrapping one).
    A requeued bare message comes back wrapped, so its ref changes; nothing here keys
    state by ref across a requeue (quorum delivery counts live in ``LogStore`` queues).

    Every message from push until it is settled (acked, dropped, purged) counts in the
    broker's ``MemoryUse``: ready and unacked messages are both held here in memory.
    """

    __slots__ = ("_bytes", "_entries", "failed", "memory", "track_bytes")

    def __init__(self, memory: MemoryUse | None = None) -> None:
        self._entries: deque[Message | _Entry] = deque()
        self._bytes = 0
        self.track_bytes = True
        self.failed = False
        self.memory = memory if memory is not None else UNMETERED

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def push(self, message: Message, deadline: int, persistent: bool) -> None:
        self._entries.append(_Entry(message, deadline) if deadline else message)
        size = len(message.body)
        self._bytes += size
        # Inlined, as in push_delivered and ack: this runs once per message.
        if not message.held:
            memory = self.memory
            memory.bytes += size + len(message.properties)
            if memory.bytes > memory.limit and not memory.alarmed:
                memory.exceeded()
        message.held += 1

    def push_delivered(self, message: Message, deadline: int, persistent: bool) -> Message:
        if not message.held:
            memory = self.memory
            memory.bytes += len(message.body) + len(message.properties)
            if memory.bytes > memory.limit and not memory.alarmed:
                memory.exceeded()
        message.held += 1
        return message

    def pop(self) -> tuple[Message | _Entry, Message, bool, int] | None:
        if not self._entries:
            return None
        item = self._entries.popleft()
        if type(item) is Message:
            self._bytes -= len(item.body)
            return item, item, False, 0
        message = item.message  # type: ignore[union-attr]
        self._bytes -= len(message.body)
        return item, message, item.redelivered, item.deadline  # type: ignore[union-attr]

    def peek_deadline(self) -> int:
        if not self._entries:
            return 0
        head = self._entries[0]
        return 0 if type(head) is Message else head.deadline  # type: ignore[union-attr]

    def requeue(self, refs: list[Message | _Entry]) -> None:
        """Put entries back in front, keeping their relative order, flagged redelivered."""
        entries = self._entries
        for ref in reversed(refs):
            if type(ref) is Message:
                entry = _Entry(ref, 0, True)
            else:
                entry = ref  # type: ignore[assignment]
                entry.redelivered = True
            entries.appendleft(entry)
            self._bytes += len(entry.message.body)

    def ack(self, refs: Iterable[Message | _Entry]) -> None:
        """Nothing to record: a settled message is no longer referenced (or counted)."""
        freed = 0
        for ref in refs:
            message: Message = ref if type(ref) is Message else ref.message  # type: ignore[assignment,union-attr]
            held = message.held - 1
            message.held = held
            if not held:
                freed += len(message.body) + len(message.properties)
        if freed:
            memory = self.memory
            memory.bytes -= freed
            if memory.alarmed and memory.bytes <= memory.limit:
                memory.fell()

    forget = ack

    def fetch(self, ref: Message | _Entry) -> Message:
        return ref if type(ref) is Message else ref.message  # type: ignore[union-attr,return-value]

    def purge(self) -> int:
        entries = self._entries
        count = len(entries)
        self.ack(entries)
        entries.clear()
        self._bytes = 0
        return count

    def delete(self) -> None:
        self.purge()


# -- log -------------------------------------------------------------------------------
