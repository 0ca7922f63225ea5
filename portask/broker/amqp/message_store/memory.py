"""MemoryStore: where a non-durable queue's ready messages wait.

``MemoryStore`` is a deque of small entries; non-durable queues use it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator

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


# Numbers every message a memory store takes, in the order taken. One counter for all
# stores: a message routed to several queues is taken by all of them at once, so in each
# queue the numbers follow that queue's own arrival order.
_TAKEN = itertools.count()


class MemoryStore:
    """Ready messages in arrival order. Requeued messages go back to their original place,
    as RabbitMQ's classic queues put them, whatever order they come back in: at the front
    of the deque (every message delivered arrived before every message still waiting),
    sorted among the other requeued ones there by ``Message.seq``.

    Refs are the stored items themselves (a ``Message``, or an ``_Entry`` wrapping one).
    A requeued bare message comes back wrapped, so its ref changes; nothing here keys
    state by ref across a requeue (quorum delivery counts live in ``LogStore`` queues).

    Every message from push until it is settled (acked, dropped, purged) counts in the
    broker's ``MemoryUse``: ready and unacked messages are both held here in memory.
    """

    __slots__ = ("_bytes", "_entries", "_front", "failed", "memory", "track_bytes")

    def __init__(self, memory: MemoryUse | None = None) -> None:
        self._entries: deque[Message | _Entry] = deque()
        self._front = 0  # how many requeued entries lead the deque
        self._bytes = 0
        self.track_bytes = True
        self.failed = False
        self.memory = memory if memory is not None else UNMETERED

    def count_bytes(self) -> None:
        self.track_bytes = True  # counted from the start: nothing to catch up on

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def push(self, message: Message, deadline: int, persistent: bool) -> None:
        message.seq = next(_TAKEN)
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

    def push_many(self, messages: list[Message]) -> None:
        """``push`` of each, with no deadline, the memory use counted once; the caller
        checks the watermark (``check_memory``) once it has delivered what it could,
        as a message handed straight to an auto-ack consumer never counts for long."""
        self._hold(messages)
        self._entries.extend(messages)

    def _hold(self, messages: list[Message]) -> None:
        """Number the messages coming in and count their bytes (the memory use too)."""
        taken = _TAKEN
        size = 0
        new = 0
        for message in messages:
            message.seq = next(taken)
            body = len(message.body)
            size += body
            if not message.held:
                new += body + len(message.properties)
            message.held += 1
        self._bytes += size
        self.memory.bytes += new

    def check_memory(self) -> None:
        memory = self.memory
        if memory.bytes > memory.limit and not memory.alarmed:
            memory.exceeded()

    def load(self, messages: list[tuple[Message, int]], all_persistent: bool) -> int:
        """``push`` of each in one pass, the memory use counted once (a restore puts back
        thousands at a time)."""
        self._hold([message for message, _deadline in messages])
        entries = self._entries
        first = 0
        for message, deadline in messages:
            if deadline:
                entries.append(_Entry(message, deadline))
                if not first or deadline < first:
                    first = deadline
            else:
                entries.append(message)
        self.check_memory()
        return first

    def push_delivered(self, message: Message, deadline: int, persistent: bool) -> Message:
        message.seq = next(_TAKEN)
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
        if self._front:
            self._front -= 1
        if type(item) is Message:
            self._bytes -= len(item.body)
            return item, item, False, 0
        message = item.message  # type: ignore[union-attr]
        self._bytes -= len(message.body)
        return item, message, item.redelivered, item.deadline  # type: ignore[union-attr]

    def take(self, most: int) -> list[Message]:
        """Up to ``most`` messages from the head while they are stored bare (each its
        own ref, with no deadline, not redelivered): ``pop`` for a batch."""
        entries = self._entries
        popleft = entries.popleft
        taken: list[Message] = []
        size = 0
        for _ in range(min(most, len(entries))):
            item = popleft()
            if type(item) is not Message:
                entries.appendleft(item)
                break
            taken.append(item)
            size += len(item.body)
        self._bytes -= size
        return taken

    def untake(self, messages: list[Message]) -> None:
        """Put back, at the head and in order, messages ``take`` gave and nobody used."""
        self._entries.extendleft(reversed(messages))
        self._bytes += sum(len(message.body) for message in messages)

    def peek(self) -> Iterator[tuple[Message, bool, int]]:
        """The ready messages in the order pop would take them, left where they are:
        (message, redelivered, deadline)."""
        for item in self._entries:
            if type(item) is Message:
                yield item, False, 0
            else:
                yield item.message, item.redelivered, item.deadline  # type: ignore[union-attr]

    def peek_deadline(self) -> int:
        if not self._entries:
            return 0
        head = self._entries[0]
        return 0 if type(head) is Message else head.deadline  # type: ignore[union-attr]

    def logged(self) -> Iterator[Message]:
        return iter(())

    def requeue(self, refs: list[Message | _Entry]) -> None:
        """Put messages back in their original place, flagged redelivered."""
        entries = self._entries
        for ref in refs:
            if type(ref) is Message:
                entry = _Entry(ref, 0, True)
            else:
                entry = ref  # type: ignore[assignment]
                entry.redelivered = True
            seq = entry.message.seq
            # Refs come back mostly in delivery order (a channel closing, multiple
            # nacks): search the requeued run from its end.
            at = self._front
            while at and entries[at - 1].message.seq > seq:  # type: ignore[union-attr]
                at -= 1
            entries.insert(at, entry)
            self._front += 1
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
        self._front = 0
        self._bytes = 0
        return count

    def delete(self) -> None:
        self.purge()


# -- log -------------------------------------------------------------------------------
