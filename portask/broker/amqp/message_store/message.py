"""A published message as the broker keeps it, what a queue's store must answer, and the
record codec: the message as a log stores it (layout: ``broker/log/amqp_message.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from portask.broker.log import amqp_message

_RECORD = amqp_message.RECORD
RECORD_HEADER = amqp_message.RECORD_HEADER
FLAG_PERSISTENT = amqp_message.FLAG_PERSISTENT


class Message:
    """A published message as received: nothing here decodes the property bytes.

    ``persistent``, ``priority`` and ``expiration`` (ms) are read from the properties
    by the protocol layer once, at publish, because queues act on them. ``held`` counts
    the memory stores holding the message, so that its bytes count once (``alarms``).
    ``seq`` is set when a memory store takes the message (``MemoryStore``).
    """

    __slots__ = ("body", "exchange", "expiration", "held", "persistent", "priority",
                 "properties", "routing_key", "seq")

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        properties: bytes | memoryview,
        body: bytes | memoryview,
        persistent: bool = False,
        priority: int = 0,
        expiration: int | None = None,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body
        self.persistent = persistent
        self.priority = priority
        self.expiration = expiration
        self.held = 0


def push_each(store: MessageStore, messages: list[tuple[Message, int]],
              all_persistent: bool) -> int:
    """``MessageStore.load`` one ``push`` at a time (the stores without a faster way)."""
    first = 0
    for message, deadline in messages:
        store.push(message, deadline, message.persistent or all_persistent)
        if deadline and (not first or deadline < first):
            first = deadline
    return first


class StoreFailed(Exception):
    """A write failed: the publish that needed it is refused (nacked)."""


class Publisher(Protocol):
    """Whoever is publishing right now, so that a failed write can nack its publishes.

    ``publish_seq`` numbers the publish being routed (publisher confirms' sequence
    number); ``write_failed(seq)`` says that the publishes from ``seq`` on may not
    have been stored.
    """

    publish_seq: int

    def write_failed(self, first_seq: int) -> None: ...


class MessageStore(Protocol):
    """What a queue needs from the place its ready messages wait."""

    track_bytes: bool
    # The last write failed (until one succeeds): see the module doc.
    failed: bool

    def __len__(self) -> int: ...

    @property
    def bytes(self) -> int: ...

    def count_bytes(self) -> None:
        """Start keeping ``bytes`` (a byte limit set after the queue was made)."""

    def push(self, message: Message, deadline: int, persistent: bool) -> None: ...

    def load(self, messages: list[tuple[Message, int]], all_persistent: bool) -> int:
        """``push`` each (message, TTL deadline ms or 0), in order (a snapshot's
        messages coming back); the earliest deadline, or 0."""

    def push_delivered(self, message: Message, deadline: int, persistent: bool) -> Any: ...

    def pop(self) -> tuple[Any, Message, bool, int] | None: ...

    def peek_deadline(self) -> int: ...

    def peek(self) -> Iterator[tuple[Message, bool, int]]:
        """Ready messages in delivery order, unchanged: (message, redelivered, deadline)."""

    def requeue(self, refs: list[Any]) -> None: ...

    def ack(self, refs: Iterable[Any]) -> None: ...

    def fetch(self, ref: Any) -> Message: ...

    def purge(self) -> int: ...

    def delete(self) -> None: ...

    def forget(self, refs: Iterable[Any]) -> None:
        """Refs of a deleted queue settled by their consumers: let go of what they hold."""

    def logged(self) -> Iterator[Message]:
        """The unsettled messages in the store's log, oldest first: what a restart
        brings back (none for a memory store). Read from disk; for recovery paths."""


def encode_record(message: Message, deadline: int, persistent: bool) -> bytes:
    exchange = message.exchange.encode()
    routing_key = message.routing_key.encode()
    properties = message.properties
    return b"".join((
        _RECORD.pack(FLAG_PERSISTENT if persistent else 0, message.priority, len(exchange),
                     len(routing_key), len(properties), deadline),
        exchange, routing_key, properties, message.body,
    ))


def decode_record(payload: memoryview) -> tuple[Message, int]:
    """(message whose properties and body are slices of ``payload``, deadline ms).

    The same reading as ``amqp_message.split``, written out: this runs per message
    delivered from a log, and the call and the 7-tuple cost ~7% of it (cachegrind).
    """
    flags, priority, ex_len, rk_len, props_len, deadline = _RECORD.unpack_from(payload)
    pos = RECORD_HEADER
    exchange = str(payload[pos:pos + ex_len], "utf-8")
    pos += ex_len
    routing_key = str(payload[pos:pos + rk_len], "utf-8")
    pos += rk_len
    properties = payload[pos:pos + props_len]
    body = payload[pos + props_len:]
    message = Message(exchange, routing_key, properties, body,
                      persistent=bool(flags & FLAG_PERSISTENT), priority=priority)
    return message, deadline


def record_body_size(payload: memoryview) -> int:
    _f, _p, ex_len, rk_len, props_len, _d = _RECORD.unpack_from(payload)
    return len(payload) - RECORD_HEADER - ex_len - rk_len - props_len


def decode_deadline(payload: memoryview) -> int:
    return _RECORD.unpack_from(payload)[5]
