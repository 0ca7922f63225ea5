"""The one interface every queue kind implements, and the counters they all keep.

A kind is a subclass of ``AmqpQueue`` in its own module: ``classic.Queue`` (classic and
quorum queues, in memory or on disk, with ``priority.PriorityStore`` for
x-max-priority) and ``stream.StreamQueue``. The protocol layer calls only what is
declared here, so where the kinds differ (a stream's consumer starts at an offset,
refuses basic.get and purge) is a method of the kind, not a branch at the caller.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Protocol

from portask.broker.amqp.message_store import Message
from portask.broker.amqp.queue_args import QueueArgs


class Consumer(Protocol):
    tag: str
    no_ack: bool
    exclusive: bool
    priority: int

    def ready(self) -> bool:
        """Whether one more delivery may be sent now."""

    def deliver(self, queue: AmqpQueue, ref: Any, message: Message, redelivered: bool
                ) -> None:
        """Send one message; unless no_ack, the consumer keeps ``ref`` until it settles."""

    def credit(self) -> int:
        """How many deliveries may be sent now, at most a batch's worth (0: none)."""

    def deliver_batch(self, queue: AmqpQueue, messages: list[Message]) -> int:
        """Send stored messages that are their own refs and not redelivered, in order:
        how many it took from the front (fewer when its send budget ran out, or at a
        message it sends only one at a time)."""

    def queue_deleted(self, queue: AmqpQueue) -> None:
        """The queue went away under the consumer (server-side cancel)."""


class AmqpQueue(abc.ABC):
    """A queue of any kind: what vhosts, channels and the management API may ask of it."""

    # A stream queue: the management API shows it and refuses its basic.get by this.
    is_stream: ClassVar[bool] = False
    # Each delivery carries its offset (``ref``) in an x-stream-offset header. A class
    # attribute rather than a method: it is read once per delivery.
    delivers_offsets: ClassVar[bool] = False
    # Whether its messages live in the broker's storage.
    on_disk: bool = False
    # Gives its name up to an AMQP declare of another kind of queue (a Kafka topic's
    # stream: applications that named a queue like a topic keep working).
    yields_name: ClassVar[bool] = False

    def __init__(self, name: str, *, vhost: str, durable: bool,
                 exclusive_owner: object | None, auto_delete: bool,
                 arguments: dict[str, Any] | None, args: QueueArgs | None) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments: dict[str, Any] = dict(arguments or {})
        self.args = args or QueueArgs()
        self.had_consumers = False
        self.deleted = False
        # Exchanges with a binding to this queue, so deletion can remove them.
        self.bound_from: set[Any] = set()
        self.unacked = 0
        # Counted here and copied to Prometheus once a second, off the per-message path.
        self.delivered = 0
        self.delivered_bytes = 0
        self.redelivered = 0
        # Lifetime totals for the management API's message_stats: the counters above
        # are added here when copied to Prometheus; the rest change per batch or on
        # paths that are already slow (get), except one increment per publish.
        self.delivered_flushed = 0
        self.redelivered_flushed = 0
        self.published_total = 0
        self.acked_total = 0
        self.deliveries_no_ack = 0
        self.gets = 0
        self.gets_no_ack = 0
        self.gets_empty = 0
        self.metric_messages: Any = None
        self.metric_bytes: Any = None

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    # The consumers attached, in the order the queue serves them.
    consumers: list[Consumer]

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)

    def has_exclusive_consumer(self) -> bool:
        return any(c.exclusive for c in self.consumers)

    @property
    @abc.abstractmethod
    def message_count(self) -> int:
        """Messages ready (a stream: messages in its log)."""

    def delete_refusal(self) -> Exception | None:
        """Why queue.delete must not remove this queue (a Kafka topic's partition), if so."""
        return None

    def where(self) -> str:
        """The queue as RabbitMQ's refusals name it."""
        return f"queue '{self.name}' in vhost '{self.vhost}'"

    # -- publish and consume -------------------------------------------------------------

    @abc.abstractmethod
    def publish(self, message: Message) -> bool:
        """Take one routed message; False when it could not be stored (nack it)."""

    def publish_many(self, messages: list[Message]) -> bool:
        """Take, whole, routed messages that a plain publisher (no confirms) sent in one
        run, when this kind can at once and its memory use is their bytes (nobody is
        told of a refusal); False, taking none, and each goes to ``publish``."""
        return False

    @abc.abstractmethod
    def dispatch(self) -> None:
        """Deliver to the consumers that are ready, while there is something to deliver."""

    def consumer_start(self, arguments: dict[str, Any], no_ack: bool,
                       prefetch: int) -> Any:
        """Check a Basic.Consume's settings for this kind; what ``add_consumer`` takes
        as ``start`` (nothing for a queue that is not a log)."""
        return None

    @abc.abstractmethod
    def add_consumer(self, consumer: Consumer, start: Any = None) -> None:
        """Attach a consumer (after its ConsumeOk is queued) and dispatch to it."""

    @abc.abstractmethod
    def remove_consumer(self, consumer: Consumer) -> bool:
        """Detach it; True when the queue should now be deleted (auto-delete)."""

    @abc.abstractmethod
    def get(self, no_ack: bool) -> tuple[Any, Message, bool] | None:
        """Basic.Get: (ref, message, redelivered) of the head, or None when empty."""

    @abc.abstractmethod
    def peek(self, start: int = 0) -> Iterator[tuple[int, Message, bool]]:
        """The messages a consumer would be handed next, in that order, without taking
        them: (position, message, redelivered) from position ``start`` on. A position is
        the place in the queue (0: the head); in a stream, the offset."""

    @abc.abstractmethod
    def load(self, messages: list[tuple[Message, int]]) -> None:
        """Put back messages a snapshot held, in order: (message, TTL deadline ms or 0).
        Not a publish: no consumer is handed one here and no counter moves."""

    # -- settlement ----------------------------------------------------------------------

    @abc.abstractmethod
    def ack(self, refs: list[Any]) -> None: ...

    @abc.abstractmethod
    def reject(self, refs: list[Any]) -> None:
        """Nack/reject without requeue."""

    @abc.abstractmethod
    def requeue(self, refs: list[Any]) -> None: ...

    @abc.abstractmethod
    def ack_quietly(self, refs: list[Any]) -> None:
        """Settle without counting an ack (the queue drops them itself)."""

    # -- lifetime ------------------------------------------------------------------------

    @abc.abstractmethod
    def touch(self) -> None:
        """The queue was used: restart its x-expires timer."""

    @abc.abstractmethod
    def purge(self) -> int:
        """Drop the ready messages; how many."""

    @abc.abstractmethod
    def delete(self) -> tuple[int, Iterable[Consumer]]:
        """Mark deleted; (messages lost, the consumers left without a queue)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Broker shutdown: stop timers, let go of read-ahead."""
