"""Classic (and quorum) queues: a message store plus the consumers it delivers to.

A message is kept exactly as it arrived (exchange, routing key, raw property bytes,
body); where it waits is the store's business (``message_store``): memory for
non-durable queues, the queue's segment log for durable ones. Nothing here decodes
properties; the one path that must (dead-lettering adds x-death headers) goes through
the vhost's dead-letter function and the protocol's property codec.

Delivery is pushed: when a message arrives or a consumer gains capacity, the queue
hands messages to the next consumer that says it is ready (round-robin within the
highest consumer priority, or only the single active consumer). Expiry (x-message-ttl,
per-message expiration) happens at the head, as in RabbitMQ: on dispatch, on get and
from a timer for the head's deadline. Length limits count ready messages only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from portask.broker.amqp.message_store import MemoryStore, Message, MessageStore, StoreFailed
from portask.broker.amqp.queue_args import QUORUM, QueueArgs
from portask.broker.amqp.queues.base import AmqpQueue, Consumer

# (queue, [(message, reason)]) -> None: route dead letters; the vhost provides it.
DeadLetterer = Callable[["Queue", list[tuple[Message, str]]], None]
# (properties, header name, int value) -> new properties (x-delivery-count on redelivery).
HeaderSetter = Callable[[bytes | memoryview, str, int], bytes]


def now_ms() -> int:
    return int(time.time() * 1000)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Queue(AmqpQueue):
    """A classic queue; a quorum queue is one too (x-queue-type quorum is accepted as an
    argument: every message kept on disk, x-delivery-limit and x-delivery-count)."""

    def __init__(
        self,
        name: str,
        *,
        vhost: str = "/",
        durable: bool = False,
        exclusive_owner: object | None = None,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        args: QueueArgs | None = None,
        store: MessageStore | None = None,
        dead_letter: DeadLetterer | None = None,
        set_header: HeaderSetter | None = None,
        on_idle_expired: Callable[[Queue], None] | None = None,
    ) -> None:
        super().__init__(name, vhost=vhost, durable=durable, exclusive_owner=exclusive_owner,
                         auto_delete=auto_delete, arguments=arguments, args=args)
        self.store: MessageStore = store if store is not None else MemoryStore()
        self.consumers: list[Consumer] = []
        self._next = 0
        self._dead_letter_fn = dead_letter
        self._set_header = set_header
        self._on_idle_expired = on_idle_expired
        # Quorum queues keep every message on disk, whatever its delivery mode.
        self._all_persistent = self.args.kind == QUORUM
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._expiry_due = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._expiring = False
        self._configure(self.args)
        # Returns per message for x-delivery-limit / x-delivery-count (quorum queues).
        self._returns: dict[Any, int] = {}
        self._uniform_priority = True

    def _configure(self, args: QueueArgs) -> None:
        """What the publish path reads, derived once from the settings in force."""
        self.args = args
        self._limited = args.max_length is not None or args.max_length_bytes is not None
        if args.max_length_bytes is not None and not self.store.track_bytes:
            self.store.count_bytes()
        self._reject_publish = args.overflow != "drop-head"
        self._ttl = args.message_ttl
        # Once set it stays: messages already queued may carry deadlines.
        self._expiring = self._expiring or args.message_ttl is not None
        # Neither a queue TTL nor a length limit: publish takes its short path.
        self._plain = args.message_ttl is None and not self._limited

    def apply_args(self, args: QueueArgs) -> None:
        """New settings in force (a policy set, changed or cleared), as RabbitMQ's
        ``process_args_policy``: a lower length limit drops (or dead-letters) the oldest
        ready messages now, x-expires restarts its clock; a message TTL applies to
        messages published from now on."""
        if args == self.args or self.deleted:
            return
        self._configure(args)
        if self._limited and not self._reject_publish:
            self._drop_over_limit()
        if self._idle_timer is not None and args.expires is None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self.touch()

    @property
    def message_count(self) -> int:
        return len(self.store)

    # -- publish -------------------------------------------------------------------------

    def publish(self, message: Message) -> bool:
        """Enqueue or deliver; False when refused (overflow reject-publish, a failed store)."""
        if self.deleted:
            return True
        self.published_total += 1
        store = self.store
        if self._plain and message.expiration is None:
            # No TTL and no length limit: nothing below but the store and a consumer.
            try:
                consumers = self.consumers
                if consumers and not len(store):
                    # _ready_consumer and _deliver written out for one consumer (nearly
                    # every queue on this path): two calls fewer per message.
                    if len(consumers) == 1:
                        self._next = 1
                        consumer = consumers[0]
                        if not consumer.ready():
                            consumer = None
                    else:
                        consumer = self._ready_consumer()
                    if consumer is not None:
                        ref = store.push_delivered(message, 0, message.persistent
                                                   or self._all_persistent)
                        consumer.deliver(self, ref, message, False)
                        if consumer.no_ack:
                            self.deliveries_no_ack += 1
                            self._forget(ref)
                        else:
                            self.unacked += 1
                        return True
                store.push(message, 0, message.persistent or self._all_persistent)
            except StoreFailed:
                return False
            return True
        return self._publish_limited(message)

    def publish_many(self, messages: list[Message]) -> bool:
        store = self.store
        if (self._plain and messages[0].expiration is None and not self.deleted
                and type(store) is MemoryStore):
            # The run's messages share their properties: none expires, none is limited.
            # Stored together, then dispatched: as publish() would deliver each to the
            # consumer ready for it or leave it waiting, in order.
            self.published_total += len(messages)
            store.push_many(messages)
            if self.consumers:
                self.dispatch()
            store.check_memory()
            return True
        return False

    def _publish_limited(self, message: Message) -> bool:
        """publish() for a queue with a TTL or a length limit, or a message with an
        expiration."""
        store = self.store
        deadline = 0
        ttl = self._ttl
        expiration = message.expiration
        if expiration is not None:
            ttl = expiration if ttl is None else min(ttl, expiration)
            self._expiring = True
        if ttl is not None:
            deadline = now_ms() + ttl
        limited = self._limited
        if limited and self._reject_publish and self._would_overflow(message):
            if self.args.overflow == "reject-publish-dlx":
                self._dead_letter([message], "maxlen")
            return False
        persistent = message.persistent or self._all_persistent
        try:
            # The common case first: a consumer is waiting and nothing is queued ahead.
            if self.consumers and not len(store):
                consumer = self._ready_consumer()
                if consumer is not None:
                    ref = store.push_delivered(message, deadline, persistent)
                    self._deliver(consumer, ref, message, False)
                    return True
            store.push(message, deadline, persistent)
        except StoreFailed:
            return False
        if limited and not self._reject_publish:
            self._drop_over_limit()
        if deadline:
            if ttl == 0:
                self._expire_head()
            else:
                self._schedule_expiry(deadline)
        return True

    def _would_overflow(self, message: Message) -> bool:
        args = self.args
        if args.max_length is not None and len(self.store) >= args.max_length:
            return True
        return (args.max_length_bytes is not None
                and self.store.bytes + len(message.body) > args.max_length_bytes)

    def _over_limit(self) -> bool:
        args = self.args
        store = self.store
        if args.max_length is not None and len(store) > args.max_length:
            return True
        return args.max_length_bytes is not None and store.bytes > args.max_length_bytes

    def _drop_over_limit(self) -> None:
        """x-overflow drop-head: the oldest ready messages go (dead-lettered as maxlen)."""
        store = self.store
        while len(store) and self._over_limit():
            item = store.pop()
            if item is None:
                return
            ref, message, _redelivered, _deadline = item
            self._dead_letter([message], "maxlen")
            store.ack([ref])

    # -- delivery ------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Hand ready messages to consumers until one side runs out."""
        if not self.consumers or self.deleted:
            return
        store = self.store
        consumers = self.consumers
        if len(consumers) == 1 and not self._returns:
            # One consumer and no delivery counts: nearly every queue with a backlog.
            self._dispatch_one(consumers[0], store)
            return
        now = 0
        # Popping past expired messages is written out here and in get(), not shared:
        # this loop runs once per delivered message.
        while len(store):
            consumer = self._ready_consumer()
            if consumer is None:
                return
            item = store.pop()
            if item is None:
                return
            ref, message, redelivered, deadline = item
            if deadline:
                if not now:
                    now = now_ms()
                if deadline <= now:
                    self._expired(ref, message)
                    continue
            self._deliver(consumer, ref, message, redelivered)

    def _dispatch_one(self, consumer: Consumer, store: MessageStore) -> None:
        """dispatch() to the queue's one consumer: _ready_consumer written out, and a
        memory store's bare messages handed over in batches; a message that goes alone
        (redelivered, with a deadline, over one frame, or from a log) goes between them."""
        if not len(store):
            return
        self._next = 1  # as _ready_consumer sets it
        memory = store if type(store) is MemoryStore else None
        while True:
            if memory is not None:
                most = consumer.credit()
                if not most:
                    return
                batch = memory.take(most)
                if batch:
                    try:
                        taken = consumer.deliver_batch(self, batch)
                    except BaseException:
                        memory.untake(batch)
                        raise  # nothing of a failed batch was sent
                    if consumer.no_ack:
                        self.deliveries_no_ack += taken
                        memory.ack(batch[:taken])
                    else:
                        self.unacked += taken
                    if taken == len(batch):
                        continue
                    memory.untake(batch[taken:])
            if not consumer.ready():
                return
            item = store.pop()
            if item is None:
                return
            ref, message, redelivered, deadline = item
            if deadline and deadline <= now_ms():
                self._expired(ref, message)
                continue
            self._deliver(consumer, ref, message, redelivered)

    def _deliver(self, consumer: Consumer, ref: Any, message: Message,
                 redelivered: bool) -> None:
        if redelivered and self._returns and self._set_header is not None:
            count = self._returns.get(ref)
            if count:
                message = Message(message.exchange, message.routing_key,
                                  self._set_header(message.properties, "x-delivery-count",
                                                   count),
                                  message.body, persistent=message.persistent,
                                  priority=message.priority)
        consumer.deliver(self, ref, message, redelivered)
        if consumer.no_ack:
            self.deliveries_no_ack += 1
            self._forget(ref)
        else:
            self.unacked += 1

    def _ready_consumer(self) -> Consumer | None:
        consumers = self.consumers
        count = len(consumers)
        if not count:
            return None
        if count == 1 or self.args.single_active_consumer:
            self._next = 1  # where round-robin goes on if more consumers come
            active = consumers[0]
            return active if active.ready() else None
        if self._uniform_priority:
            start = self._next
            for i in range(count):
                index = (start + i) % count
                consumer = consumers[index]
                if consumer.ready():
                    self._next = index + 1
                    return consumer
            return None
        # Consumer priorities: the highest group with a ready consumer, round-robin in it.
        i = 0
        while i < count:
            level = consumers[i].priority
            j = i
            while j < count and consumers[j].priority == level:
                j += 1
            size = j - i
            start = self._next
            for k in range(size):
                consumer = consumers[i + (start + k) % size]
                if consumer.ready():
                    self._next = (start + k) % size + 1
                    return consumer
            i = j
        return None

    def get(self, no_ack: bool) -> tuple[Any, Message, bool] | None:
        """Basic.Get: the head message (expired ones are dropped on the way)."""
        self.touch()
        store = self.store
        now = 0
        while len(store):
            item = store.pop()
            if item is None:
                return None
            ref, message, redelivered, deadline = item
            if deadline:
                if not now:
                    now = now_ms()
                if deadline <= now:
                    self._expired(ref, message)
                    continue
            if redelivered and self._returns and self._set_header is not None:
                count = self._returns.get(ref)
                if count:
                    message = Message(message.exchange, message.routing_key,
                                      self._set_header(message.properties,
                                                       "x-delivery-count", count),
                                      message.body, persistent=message.persistent,
                                      priority=message.priority)
            self.gets += 1
            if no_ack:
                self.gets_no_ack += 1
                self._forget(ref)
            else:
                self.unacked += 1
            return ref, message, redelivered
        self.gets_empty += 1
        return None

    def peek(self, start: int = 0) -> Iterator[tuple[int, Message, bool]]:
        """Ready messages in delivery order; expired ones (which no consumer would be
        handed) are passed over, not dropped."""
        now = now_ms()
        position = 0
        for message, redelivered, deadline in self.store.peek():
            if deadline and deadline <= now:
                continue
            if position >= start:
                yield position, message, redelivered
            position += 1

    def load(self, messages: list[tuple[Message, int]]) -> None:
        first = self.store.load(messages, self._all_persistent)
        if first:
            self._expiring = True
            self._schedule_expiry(first)
        self.dispatch()

    # -- settlement ----------------------------------------------------------------------

    def _forget(self, ref: Any) -> None:
        if self._returns:
            self._returns.pop(ref, None)
        self.store.ack((ref,))

    def ack(self, refs: list[Any]) -> None:
        self.unacked -= len(refs)
        self.acked_total += len(refs)
        if self.deleted:
            self.store.forget(refs)
            return
        self.ack_quietly(refs)

    def reject(self, refs: list[Any]) -> None:
        """Nack/reject without requeue: dead-letter (reason rejected) or drop."""
        self.unacked -= len(refs)
        if self.deleted:
            self.store.forget(refs)
            return
        if self.args.dead_letter_exchange is not None:
            self._dead_letter([(self.store.fetch(ref)) for ref in refs], "rejected")
        self.ack_quietly(refs)

    def ack_quietly(self, refs: list[Any]) -> None:
        if self._returns:
            for ref in refs:
                self._returns.pop(ref, None)
        self.store.ack(refs)

    def requeue(self, refs: list[Any]) -> None:
        """Return unsettled messages, flagged redelivered, ahead of the ready ones."""
        self.unacked -= len(refs)
        if self.deleted:
            self.store.forget(refs)
            return
        if not refs:
            return
        limit = self.args.delivery_limit
        if self.args.kind == QUORUM:
            returns = self._returns
            back: list[Any] = []
            for ref in refs:
                count = returns.get(ref, 0) + 1
                if limit is not None and count > limit:
                    returns.pop(ref, None)
                    self._dead_letter([self.store.fetch(ref)], "delivery_limit")
                    self.store.ack((ref,))
                else:
                    returns[ref] = count
                    back.append(ref)
            refs = back
        if refs:
            self.store.requeue(refs)
            if self._expiring:
                self._schedule_expiry(self.store.peek_deadline())
        self.dispatch()

    def purge(self) -> int:
        return self.store.purge()

    # -- expiry --------------------------------------------------------------------------

    def _expired(self, ref: Any, message: Message) -> None:
        self._dead_letter([message], "expired")
        self.ack_quietly([ref])

    def _dead_letter(self, messages: list[Message], reason: str) -> None:
        if self.args.dead_letter_exchange is not None and self._dead_letter_fn is not None:
            self._dead_letter_fn(self, [(m, reason) for m in messages])

    def _schedule_expiry(self, deadline: int) -> None:
        if not deadline or self.deleted:
            return
        if self._expiry_timer is not None and self._expiry_due <= deadline:
            return
        loop = _running_loop()
        if loop is None:
            return
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        self._expiry_due = deadline
        delay = max(0.0, (deadline - now_ms()) / 1000)
        self._expiry_timer = loop.call_later(delay, self._expiry_fired)

    def _expiry_fired(self) -> None:
        self._expiry_timer = None
        self._expiry_due = 0
        self._expire_head()

    def _expire_head(self) -> None:
        """Drop (or dead-letter) expired messages at the head; schedule the next check."""
        if self.deleted:
            return
        store = self.store
        now = now_ms()
        while len(store):
            deadline = store.peek_deadline()
            if not deadline or deadline > now:
                self._schedule_expiry(deadline)
                return
            item = store.pop()
            if item is None:
                return
            self._expired(item[0], item[1])

    # -- consumers and lifetime ------------------------------------------------------------

    def touch(self) -> None:
        """x-expires: the queue was used; restart its idle clock if it has no consumers."""
        expires = self.args.expires
        if expires is None or self.deleted:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self.consumers:
            return
        loop = _running_loop()
        if loop is not None:
            self._idle_timer = loop.call_later(expires / 1000, self._idle_expired)

    def _idle_expired(self) -> None:
        self._idle_timer = None
        if not self.consumers and not self.deleted and self._on_idle_expired is not None:
            self._on_idle_expired(self)

    def add_consumer(self, consumer: Consumer, start: Any = None) -> None:
        consumers = self.consumers
        # Sorted by priority, highest first; equal priorities keep their arrival order.
        index = len(consumers)
        while index and consumers[index - 1].priority < consumer.priority:
            index -= 1
        consumers.insert(index, consumer)
        self._uniform_priority = len({c.priority for c in consumers}) == 1
        self.had_consumers = True
        self.touch()
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> bool:
        """Remove it; True when the queue is auto-delete and has just lost its last consumer."""
        try:
            self.consumers.remove(consumer)
        except ValueError:
            return False
        self._uniform_priority = len({c.priority for c in self.consumers}) <= 1
        if not self.consumers:
            self.touch()
        elif self.args.single_active_consumer:
            self.dispatch()  # the next consumer becomes the active one
        return self.auto_delete and self.had_consumers and not self.consumers

    def delete(self) -> tuple[int, Iterable[Consumer]]:
        """Mark deleted, drop messages; returns the count dropped and the orphaned consumers."""
        self.deleted = True
        for timer in (self._expiry_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._expiry_timer = self._idle_timer = None
        consumers, self.consumers = self.consumers, []
        count = len(self.store)
        self.store.delete()
        return count, consumers

    def close(self) -> None:
        """Broker shutdown: stop timers; the store's logs are closed by their directory."""
        for timer in (self._expiry_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._expiry_timer = self._idle_timer = None
