"""Queues: a message store plus the consumers it delivers to, round-robin.

A message is kept exactly as it arrived: exchange, routing key, the raw content-header
property bytes and the body bytes. Nothing here decodes properties, so the store can
later be the segment log (the property bytes and body are what a record will hold).

Delivery is pushed: when a message arrives or a consumer gains capacity, the queue
hands messages to the next consumer that says it is ready. What "ready" means (prefetch
windows, flow, a full socket) is the consumer's business.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol


class Message:
    __slots__ = ("body", "exchange", "properties", "redelivered", "routing_key")

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
        redelivered: bool = False,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body
        self.redelivered = redelivered

    def redelivery(self) -> Message:
        """The same message flagged as redelivered; the original may sit in other queues."""
        if self.redelivered:
            return self
        return Message(self.exchange, self.routing_key, self.properties, self.body, True)


class Consumer(Protocol):
    tag: str
    no_ack: bool
    exclusive: bool

    def ready(self) -> bool:
        """Whether one more delivery may be sent now."""

    def deliver(self, queue: Queue, message: Message) -> None:
        """Send one message; the consumer tracks it until it is settled."""

    def queue_deleted(self, queue: Queue) -> None:
        """The queue went away under the consumer (server-side cancel)."""


class MemoryMessageStore:
    """Ready messages in arrival order; requeued messages go back to the front."""

    __slots__ = ("_bytes", "_messages")

    def __init__(self) -> None:
        self._messages: deque[Message] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def bytes(self) -> int:
        return self._bytes

    def push(self, message: Message) -> None:
        self._messages.append(message)
        self._bytes += len(message.body)

    def pop(self) -> Message:
        message = self._messages.popleft()
        self._bytes -= len(message.body)
        return message

    def push_front(self, messages: list[Message]) -> None:
        """Put messages back in front, keeping their relative order."""
        for message in reversed(messages):
            self._messages.appendleft(message)
            self._bytes += len(message.body)

    def clear(self) -> int:
        count = len(self._messages)
        self._messages.clear()
        self._bytes = 0
        return count


class Queue:
    def __init__(
        self,
        name: str,
        *,
        durable: bool = False,
        exclusive_owner: object | None = None,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments: dict[str, Any] = dict(arguments or {})
        self.store = MemoryMessageStore()
        self.consumers: list[Consumer] = []
        self._next = 0
        self.had_consumers = False
        self.deleted = False
        # Exchanges with a binding to this queue, so deletion can remove them.
        self.bound_from: set[Any] = set()
        self.unacked = 0
        # Counted here and copied to Prometheus once a second, off the per-message path.
        self.delivered = 0
        self.delivered_bytes = 0
        self.redelivered = 0
        self.metric_messages: Any = None
        self.metric_bytes: Any = None

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    @property
    def message_count(self) -> int:
        return len(self.store)

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)

    def has_exclusive_consumer(self) -> bool:
        return any(c.exclusive for c in self.consumers)

    def publish(self, message: Message) -> None:
        store = self.store
        if self.consumers and not store:
            consumer = self._ready_consumer()
            if consumer is not None:
                consumer.deliver(self, message)
                return
        store.push(message)

    def dispatch(self) -> None:
        """Hand ready messages to consumers until one side runs out."""
        store = self.store
        while store:
            consumer = self._ready_consumer()
            if consumer is None:
                return
            consumer.deliver(self, store.pop())

    def _ready_consumer(self) -> Consumer | None:
        consumers = self.consumers
        count = len(consumers)
        start = self._next
        for i in range(count):
            index = (start + i) % count
            consumer = consumers[index]
            if consumer.ready():
                self._next = index + 1
                return consumer
        return None

    def get(self) -> Message | None:
        return self.store.pop() if self.store else None

    def requeue(self, messages: list[Message]) -> None:
        """Return unsettled messages, flagged redelivered, ahead of the ready ones."""
        if self.deleted or not messages:
            return
        self.store.push_front([m.redelivery() for m in messages])
        self.dispatch()

    def purge(self) -> int:
        return self.store.clear()

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.had_consumers = True
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> bool:
        """Remove it; True when the queue is auto-delete and has just lost its last consumer."""
        try:
            self.consumers.remove(consumer)
        except ValueError:
            return False
        return self.auto_delete and self.had_consumers and not self.consumers

    def delete(self) -> tuple[int, Iterable[Consumer]]:
        """Mark deleted, drop messages; returns the count dropped and the orphaned consumers."""
        self.deleted = True
        consumers, self.consumers = self.consumers, []
        return self.store.clear(), consumers
