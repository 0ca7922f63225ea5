"""Virtual hosts: the namespace of exchanges and queues, and the routing between them.

Every declare/bind/delete rule that RabbitMQ enforces lives here, expressed as
``amqp_errors`` exceptions; the protocol layer turns them into reply codes.

Durability: durable exchanges, durable non-exclusive queues and bindings whose both
ends are durable are written to the broker's ``Definitions`` when declared and removed
when deleted; ``VirtualHosts.open`` replays them (and recovers each durable queue's
message log) at start-up. Durable queues keep their messages in ``QueueStorage``.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeAlias

from portask import metrics
from portask.broker.alarms import MemoryUse
from portask.broker.amqp.dead_letter import PropertyCodec, UndecodableProperties, is_cycle
from portask.broker.amqp.definitions import table_from_plain, table_to_plain
from portask.broker.amqp.errors import (
    AccessRefused,
    CommandInvalid,
    NotFound,
    NotImplementedFeature,
    PreconditionFailed,
    ResourceLocked,
)
from portask.broker.amqp.exchanges import EXCHANGE_TYPES, DefaultExchange, Exchange, HeadersSource
from portask.broker.amqp.exchanges.base import arguments_key
from portask.broker.amqp.exchanges.headers import match_mode
from portask.broker.amqp.message_store import (
    MemoryStore,
    MessageStore,
    Publisher,
    QueueStorage,
)
from portask.broker.amqp.queue_args import (
    KNOWN_ARGS,
    STREAM,
    QueueArgs,
    amqp_type,
    parse_queue_arguments,
)
from portask.broker.amqp.queues import AmqpQueue, Message, PriorityStore, Queue, StreamQueue
from portask.broker.definitions import BINDINGS, EXCHANGES, QUEUES, VHOSTS, Definitions

log = logging.getLogger("portask.amqp")

# Any queue kind (the one interface); the name stays for the modules that import it.
AnyQueue: TypeAlias = AmqpQueue

# The predeclared exchanges every RabbitMQ vhost has.
_PREDECLARED = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)


DEFAULT_EXCHANGE_REFUSED = "operation not permitted on the default exchange"

class QueueTotals:
    """Lifetime message counters summed over queues (read by the management API)."""

    __slots__ = (
        "ack",
        "deliver",
        "deliver_get",
        "deliver_no_ack",
        "get",
        "get_empty",
        "get_no_ack",
        "publish",
        "redeliver",
    )

    def __init__(self) -> None:
        self.publish = self.deliver_get = self.ack = self.redeliver = 0
        self.deliver = self.deliver_no_ack = self.get = self.get_no_ack = self.get_empty = 0

    def add(self, queue: AnyQueue) -> QueueTotals:
        delivered = queue.delivered + queue.delivered_flushed
        self.publish += queue.published_total
        self.deliver_get += delivered
        self.ack += queue.acked_total
        self.redeliver += queue.redelivered + queue.redelivered_flushed
        self.deliver += delivered - queue.gets
        self.deliver_no_ack += queue.deliveries_no_ack
        self.get += queue.gets
        self.get_no_ack += queue.gets_no_ack
        self.get_empty += queue.gets_empty
        return self

    def merge(self, other: QueueTotals) -> QueueTotals:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


def queue_totals(queue: AnyQueue) -> QueueTotals:
    return QueueTotals().add(queue)


def _flag(value: bool) -> str:
    return "true" if value else "false"


# The message and byte counters are labelled by exchange or queue name alone, so
# same-named objects in different vhosts share a series: it is removed only when the
# last of them is deleted.
_NAMED_METRIC_USERS: collections.Counter[tuple[str, str]] = collections.Counter()


def _last_user(kind: str, name: str) -> bool:
    _NAMED_METRIC_USERS[kind, name] -= 1
    if _NAMED_METRIC_USERS[kind, name] > 0:
        return False
    del _NAMED_METRIC_USERS[kind, name]
    return True


class VirtualHost:
    def __init__(self, name: str, *, definitions: Definitions | None = None,
                 storage: QueueStorage | None = None, codec: PropertyCodec | None = None,
                 memory: MemoryUse | None = None) -> None:
        self.name = name
        self.definitions = definitions
        self.storage = storage
        self.codec = codec
        # What in-memory queue stores hold counts here (the memory alarm).
        self.memory = memory
        self.queues: dict[str, AnyQueue] = {}
        # Lifetime counters for the management API and RabbitMQ-named metrics; each
        # changes on a path that is not per message (declare, delete, an unroutable or
        # returned publish, a batch of confirms).
        self.queues_declared = 0
        self.queues_created = 0
        self.queues_deleted = 0
        self.unroutable = 0
        self.returned = 0
        self.confirmed = 0
        self.received_confirm = 0
        # Totals of deleted queues and exchanges, so vhost-wide counters never go back.
        self.retired = QueueTotals()
        self.retired_published = 0
        self.size_counts = [0] * 64
        self.retired_published_bytes = 0
        self.default_exchange = DefaultExchange(self.queues.get)
        self.exchanges: dict[str, Exchange] = {"": self.default_exchange}
        self._bind_exchange_metrics(self.default_exchange)
        for ex_name, kind in _PREDECLARED:
            exchange = EXCHANGE_TYPES[kind](ex_name, durable=True)
            self.exchanges[ex_name] = exchange
            self._bind_exchange_metrics(exchange)

    # -- exchanges -------------------------------------------------------------------

    def exchange(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise NotFound(f"no exchange '{name}' in vhost '{self.name}'")
        return exchange

    def exchange_for_publish(self, name: str) -> Exchange:
        exchange = self.exchange(name)
        if exchange.internal:
            raise AccessRefused(
                f"cannot publish to internal exchange '{name}' in vhost '{self.name}'"
            )
        return exchange

    def declare_exchange(
        self,
        name: str,
        kind: str,
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> Exchange:
        arguments = dict(arguments or {})
        existing = self.exchanges.get(name)
        if passive:
            if name == "":
                raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
            if existing is None:
                raise NotFound(f"no exchange '{name}' in vhost '{self.name}'")
            return existing
        if name == "" or name.startswith("amq."):
            if existing is not None and existing.kind == kind and name:
                return existing
            raise AccessRefused(
                f"exchange name '{name}' contains reserved prefix 'amq.*'"
                if name else DEFAULT_EXCHANGE_REFUSED
            )
        cls = EXCHANGE_TYPES.get(kind)
        if cls is None:
            raise CommandInvalid(f"unknown exchange type '{kind}'")
        if existing is not None:
            self._check_exchange_equivalent(existing, kind, durable, auto_delete, internal,
                                            arguments)
            return existing
        exchange = cls(name, durable=durable, auto_delete=auto_delete, internal=internal,
                       arguments=arguments)
        self.exchanges[name] = exchange
        self._bind_exchange_metrics(exchange)
        if durable and self.definitions is not None:
            self.definitions.put(EXCHANGES, (self.name, name), {
                "type": kind, "auto_delete": auto_delete, "internal": internal,
                "arguments": table_to_plain(arguments),
            })
        return exchange

    def _check_exchange_equivalent(
        self, ex: Exchange, kind: str, durable: bool, auto_delete: bool, internal: bool,
        arguments: dict[str, Any],
    ) -> None:
        for arg, got, have in (
            ("type", kind, ex.kind),
            ("durable", durable, ex.durable),
            ("auto_delete", auto_delete, ex.auto_delete),
            ("internal", internal, ex.internal),
        ):
            if got != have:
                raise PreconditionFailed(
                    f"inequivalent arg '{arg}' for exchange '{ex.name}' in vhost "
                    f"'{self.name}': received '{_show(got)}' but current is '{_show(have)}'"
                )
        if arguments.get("alternate-exchange") != ex.arguments.get("alternate-exchange"):
            raise PreconditionFailed(
                f"inequivalent arg 'alternate-exchange' for exchange '{ex.name}' in vhost "
                f"'{self.name}': received {_show(arguments.get('alternate-exchange'))} "
                f"but current is {_show(ex.arguments.get('alternate-exchange'))}"
            )

    def delete_exchange(self, name: str, *, if_unused: bool = False) -> None:
        if name == "":
            raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)
        if name.startswith("amq."):
            raise AccessRefused(f"deletion of system exchange '{name}' in vhost "
                                f"'{self.name}' not allowed")
        exchange = self.exchanges.get(name)
        if exchange is None:
            return  # RabbitMQ makes delete idempotent
        if if_unused and exchange.bindings:
            raise PreconditionFailed(f"exchange '{name}' in vhost '{self.name}' in use")
        self._remove_exchange(exchange)

    def _remove_exchange(self, exchange: Exchange) -> None:
        if exchange.published:
            exchange.metric_messages.inc(exchange.published)
            exchange.metric_bytes.inc(exchange.published_bytes)
        self.retired_published += exchange.published + exchange.published_flushed
        self.retired_published_bytes += exchange.published_bytes + exchange.published_bytes_flushed
        exchange.deleted = True
        self.exchanges.pop(exchange.name, None)
        self._release_exchange_metrics(exchange)
        for binding in exchange.bindings.values():
            self._forget_binding(exchange, binding.destination, binding.routing_key,
                                 binding.arguments)
        if exchange.durable and self.definitions is not None:
            self.definitions.delete(EXCHANGES, (self.name, exchange.name))
        for dest in list(exchange.destinations()):
            dest.bound_from.discard(exchange)
        exchange.bindings.clear()
        for source in list(exchange.bound_from):
            self._forget_bindings_to(source, exchange)
            source.unbind_destination(exchange)
            self._auto_delete_exchange(source)
        exchange.bound_from.clear()

    def _auto_delete_exchange(self, exchange: Exchange) -> None:
        if exchange.auto_delete and not exchange.bindings and not exchange.deleted:
            self._remove_exchange(exchange)

    def bind_exchange(
        self, destination: str, source: str, routing_key: str, arguments: dict[str, Any]
    ) -> None:
        dest = self._bindable(destination, "destination")
        src = self._bindable(source, "source")
        self._check_binding_arguments(src, arguments)
        if src.bind(dest, routing_key, arguments):
            dest.bound_from.add(src)
            self._save_binding(src, dest, routing_key, arguments)

    def unbind_exchange(
        self, destination: str, source: str, routing_key: str, arguments: dict[str, Any]
    ) -> None:
        # Idempotent, as in RabbitMQ 3.x: a missing end means there is no such binding.
        self._check_not_default(destination)
        self._check_not_default(source)
        dest = self.exchanges.get(destination)
        src = self.exchanges.get(source)
        if dest is not None and src is not None and src.unbind(dest, routing_key, arguments):
            self._forget_binding(src, dest, routing_key, arguments)
            if not src.has_binding_to(dest):
                dest.bound_from.discard(src)
            self._auto_delete_exchange(src)

    def _bindable(self, name: str, role: str) -> Exchange:
        self._check_not_default(name)
        return self.exchange(name)

    @staticmethod
    def _check_not_default(name: str) -> None:
        if name == "":
            raise AccessRefused(DEFAULT_EXCHANGE_REFUSED)

    def _check_binding_arguments(self, exchange: Exchange, arguments: dict[str, Any]) -> None:
        if exchange.kind == "headers" and match_mode(arguments) is None:
            raise PreconditionFailed(
                f"invalid x-match field value {arguments.get('x-match')!r}; expected all, "
                "any, all-with-x or any-with-x"
            )

    # -- durable bindings ---------------------------------------------------------------

    @staticmethod
    def _durable(end: Any) -> bool:
        if isinstance(end, Exchange):
            return end.durable
        return bool(end.durable) and end.exclusive_owner is None

    def _binding_key(self, source: Exchange, dest: Any, routing_key: str,
                     arguments: dict[str, Any]) -> tuple[str, ...]:
        kind = "e" if isinstance(dest, Exchange) else "q"
        return (self.name, source.name, kind, dest.name, routing_key, arguments_key(arguments))

    def _save_binding(self, source: Exchange, dest: Any, routing_key: str,
                      arguments: dict[str, Any]) -> None:
        if self.definitions is not None and self._durable(source) and self._durable(dest):
            self.definitions.put(BINDINGS, self._binding_key(source, dest, routing_key,
                                                             arguments),
                                 table_to_plain(arguments))

    def _forget_binding(self, source: Exchange, dest: Any, routing_key: str,
                        arguments: dict[str, Any]) -> None:
        if self.definitions is not None and self._durable(source) and self._durable(dest):
            self.definitions.delete(BINDINGS, self._binding_key(source, dest, routing_key,
                                                                arguments))

    def _forget_bindings_to(self, source: Exchange, dest: Any) -> None:
        for binding in list(source.bindings.values()):
            if binding.destination is dest:
                self._forget_binding(source, dest, binding.routing_key, binding.arguments)

    # -- queues ----------------------------------------------------------------------

    def queue(self, name: str, owner: object) -> AnyQueue:
        queue = self.queues.get(name)
        if queue is None:
            raise NotFound(f"no queue '{name}' in vhost '{self.name}'")
        self._check_owner(queue, owner)
        return queue

    def _check_owner(self, queue: AnyQueue, owner: object) -> None:
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            raise ResourceLocked(
                f"cannot obtain exclusive access to locked queue '{queue.name}' in vhost "
                f"'{self.name}'. It could be originally declared on another connection or "
                "the exclusive property value does not match that of the original declaration."
            )

    def declare_queue(
        self,
        name: str,
        *,
        owner: object,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> AnyQueue:
        arguments = dict(arguments or {})
        self.queues_declared += 1
        if passive:
            if not name:
                raise NotFound(f"no queue '' in vhost '{self.name}'")
            queue = self.queue(name, owner)
            queue.touch()
            return queue
        if not name:
            name = self._generated_name()
        elif name.startswith("amq."):
            raise AccessRefused(
                f"queue name '{name}' contains reserved prefix 'amq.*'"
            )
        existing = self.queues.get(name)
        if existing is not None:
            self._check_owner(existing, owner)
            self._check_queue_equivalent(existing, durable, exclusive, auto_delete, arguments)
            existing.touch()
            return existing
        args = parse_queue_arguments(arguments, queue=name, vhost=self.name, durable=durable,
                                     exclusive=exclusive, auto_delete=auto_delete)
        queue = self._new_queue(name, durable=durable,
                                exclusive_owner=owner if exclusive else None,
                                auto_delete=auto_delete, arguments=arguments, args=args)
        self.queues_created += 1
        if queue.durable and queue.exclusive_owner is None and self.definitions is not None:
            self.definitions.put(QUEUES, (self.name, name), {
                "auto_delete": auto_delete, "arguments": table_to_plain(arguments),
            })
        return queue

    def _new_queue(self, name: str, *, durable: bool, exclusive_owner: object | None,
                   auto_delete: bool, arguments: dict[str, Any], args: QueueArgs) -> AnyQueue:
        storage = self.storage
        on_disk = durable and exclusive_owner is None and storage is not None
        queue: AnyQueue
        if args.kind == STREAM:
            if storage is None:
                raise NotImplementedFeature("stream queues need the broker's storage")
            stream_log = storage.open_stream(
                self.name, name, segment_bytes=args.stream_segment_bytes,
                max_age_ms=args.max_age_ms, max_bytes=args.max_length_bytes)
            queue = StreamQueue(name, vhost=self.name, arguments=arguments, args=args,
                                log=stream_log, storage=storage)
        else:
            store: MessageStore
            if on_disk:
                assert storage is not None
                vhost = self.name
                if args.max_priority:
                    store = PriorityStore(args.max_priority,
                                          lambda level: storage.open_lane(vhost, name, level),
                                          storage.lanes(vhost, name))
                else:
                    store = storage.open_lane(vhost, name, 0)
            elif args.max_priority:
                memory = self.memory
                store = PriorityStore(args.max_priority, lambda _level: MemoryStore(memory))
            else:
                store = MemoryStore(self.memory)
            codec = self.codec
            queue = Queue(name, vhost=self.name, durable=durable,
                          exclusive_owner=exclusive_owner, auto_delete=auto_delete,
                          arguments=arguments, args=args, store=store,
                          dead_letter=self._dead_letter,
                          set_header=codec.set_int_header if codec is not None else None,
                          on_idle_expired=self._idle_expired)
        if on_disk:
            queue.on_disk = True
        self.queues[name] = queue
        self._bind_queue_metrics(queue)
        queue.touch()
        return queue

    def _idle_expired(self, queue: Queue) -> None:
        log.info("queue expired (x-expires)", extra={"fields": {
            "vhost": self.name, "queue": queue.name}})
        self.remove_queue(queue)

    def _generated_name(self) -> str:
        while True:
            name = "amq.gen-" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
            if name not in self.queues:
                return name

    def _check_queue_equivalent(
        self, queue: AnyQueue, durable: bool, exclusive: bool, auto_delete: bool,
        arguments: dict[str, Any],
    ) -> None:
        for arg, got, have in (
            ("durable", durable, queue.durable),
            ("exclusive", exclusive, queue.exclusive),
            ("auto_delete", auto_delete, queue.auto_delete),
        ):
            if got != have:
                raise PreconditionFailed(
                    f"inequivalent arg '{arg}' for queue '{queue.name}' in vhost "
                    f"'{self.name}': received '{_show(got)}' but current is '{_show(have)}'"
                )
        # Like RabbitMQ, only arguments it knows are compared (x-foo may differ).
        for key in sorted(KNOWN_ARGS & (set(arguments) | set(queue.arguments))):
            got, have = arguments.get(key), queue.arguments.get(key)
            if got != have or type(got) is not type(have):
                raise PreconditionFailed(
                    f"inequivalent arg '{key}' for queue '{queue.name}' in vhost "
                    f"'{self.name}': received {_arg_value(got)} but current is "
                    f"{_arg_value(have)}"
                )

    def bind_queue(
        self, queue_name: str, exchange_name: str, routing_key: str, arguments: dict[str, Any],
        owner: object,
    ) -> None:
        queue = self.queue(queue_name, owner)
        exchange = self._bindable(exchange_name, "source")
        self._check_binding_arguments(exchange, arguments)
        if exchange.bind(queue, routing_key, arguments):
            queue.bound_from.add(exchange)
            self._save_binding(exchange, queue, routing_key, arguments)

    def unbind_queue(
        self, queue_name: str, exchange_name: str, routing_key: str, arguments: dict[str, Any],
        owner: object,
    ) -> None:
        # Idempotent, as in RabbitMQ 3.x (RPC helpers unbind auto-deleted queues): a
        # missing queue or exchange means there is no such binding.
        self._check_not_default(exchange_name)
        queue = self.queues.get(queue_name)
        exchange = self.exchanges.get(exchange_name)
        if queue is None or exchange is None:
            return
        self._check_owner(queue, owner)
        if exchange.unbind(queue, routing_key, arguments):
            self._forget_binding(exchange, queue, routing_key, arguments)
            if not exchange.has_binding_to(queue):
                queue.bound_from.discard(exchange)
            self._auto_delete_exchange(exchange)

    def purge_queue(self, name: str, owner: object) -> int:
        return self.queue(name, owner).purge()

    def delete_queue(
        self, name: str, *, owner: object, if_unused: bool = False, if_empty: bool = False
    ) -> int:
        queue = self.queues.get(name)
        if queue is None:
            return 0  # RabbitMQ makes delete idempotent
        self._check_owner(queue, owner)
        if if_unused and queue.consumers:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' in use")
        if if_empty and queue.message_count:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' not empty")
        return self.remove_queue(queue)

    def remove_queue(self, queue: AnyQueue) -> int:
        """Delete a queue, cancel its consumers and drop its bindings; returns messages lost."""
        if queue.deleted:
            return 0
        self.flush_queue_metrics(queue)
        self.queues.pop(queue.name, None)
        self.queues_deleted += 1
        self.retired.add(queue)
        count, consumers = queue.delete()
        if self.definitions is not None and self._durable(queue):
            self.definitions.delete(QUEUES, (self.name, queue.name))
        for consumer in consumers:
            consumer.queue_deleted(queue)  # type: ignore[arg-type]
        for exchange in list(queue.bound_from):
            self._forget_bindings_to(exchange, queue)
            exchange.unbind_destination(queue)
            self._auto_delete_exchange(exchange)
        queue.bound_from.clear()
        if queue.on_disk and self.storage is not None:
            self.storage.remove_queue(self.name, queue.name)
        for gauge in (metrics.AMQP_QUEUE_MESSAGES_READY, metrics.AMQP_QUEUE_MESSAGES_UNACKED,
                      metrics.AMQP_QUEUE_CONSUMERS):
            with contextlib.suppress(KeyError):
                gauge.remove(self.name, queue.name)
        self._release_queue_metrics(queue)
        return count

    def connection_closed(self, owner: object) -> None:
        """Exclusive queues live exactly as long as the connection that declared them."""
        for queue in [q for q in self.queues.values() if q.exclusive_owner is owner]:
            self.remove_queue(queue)

    # -- routing ---------------------------------------------------------------------

    def route(self, exchange: Exchange, routing_key: str, headers: HeadersSource
              ) -> list[AnyQueue]:
        """The queues a message reaches, following exchange bindings and alternate exchanges."""
        found: dict[int, AnyQueue] = {}
        seen: set[int] = set()
        self._route_into(exchange, routing_key, headers, found, seen)
        return list(found.values())

    def _route_into(
        self, exchange: Exchange, routing_key: str, headers: HeadersSource,
        found: dict[int, AnyQueue], seen: set[int],
    ) -> None:
        seen.add(id(exchange))
        before = len(found)
        matched = False
        for dest in exchange.route(routing_key, headers):
            matched = True
            if not isinstance(dest, Exchange):
                found[id(dest)] = dest
            elif id(dest) not in seen:
                self._route_into(dest, routing_key, headers, found, seen)
        if (not matched or len(found) == before) and exchange.alternate_exchange:
            alternate = self.exchanges.get(exchange.alternate_exchange)
            if alternate is not None and id(alternate) not in seen:
                self._route_into(alternate, routing_key, headers, found, seen)

    def publish(self, exchange: Exchange, message: Message, headers: HeadersSource,
                publisher: Publisher | None = None) -> tuple[int, bool]:
        """Route and enqueue: (queues reached, whether every queue accepted it).

        A queue refuses with x-overflow reject-publish(-dlx) when full, or when its log
        cannot be written; a confirming publisher then gets a nack. ``publisher`` (one
        that wants confirms) is also told if a write at the commit point fails.
        """
        size = len(message.body)
        exchange.published += 1
        exchange.published_bytes += size
        # Message sizes for rabbitmq_message_size_bytes: a counter per power of two.
        self.size_counts[(size - 1).bit_length()] += 1
        storage = self.storage
        if storage is not None:
            # Left set afterwards (one store per publish, not two): the only other
            # way into a queue, dead-lettering, clears it while it runs.
            storage.publisher = publisher
        destinations = exchange.route(message.routing_key, headers)
        accepted = True
        # Fast path: one hop straight to queues, which is nearly every publish.
        if not exchange.exchange_bindings and not exchange.alternate_exchange:
            for queue in destinations:
                if not queue.publish(message):  # type: ignore[union-attr]
                    accepted = False
            count = len(destinations)  # type: ignore[arg-type]
        else:
            queues = self.route(exchange, message.routing_key, headers)
            for queue in queues:
                if not queue.publish(message):
                    accepted = False
            count = len(queues)
        if not count:
            self.unroutable += 1
            metrics.AMQP_MESSAGES_UNROUTABLE.labels(self.name, exchange.name).inc()
        return count, accepted

    # -- dead-lettering ----------------------------------------------------------------

    def _dead_letter(self, queue: Queue, items: list[tuple[Message, str]]) -> None:
        """Republish to the queue's x-dead-letter-exchange with an x-death entry added."""
        storage = self.storage
        if storage is None or storage.publisher is None:
            self._route_dead_letters(queue, items)
            return
        # Dead letters are nobody's publish (and publish() leaves the last publisher
        # set): a failed write of one must not nack a publish that was stored.
        publisher, storage.publisher = storage.publisher, None
        try:
            self._route_dead_letters(queue, items)
        finally:
            storage.publisher = publisher

    def _route_dead_letters(self, queue: Queue, items: list[tuple[Message, str]]) -> None:
        codec = self.codec
        dlx_name = queue.args.dead_letter_exchange
        if codec is None or dlx_name is None:
            return
        exchange = self.exchanges.get(dlx_name)
        if exchange is None:
            return  # RabbitMQ drops dead letters whose exchange does not exist
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        routing_key_override = queue.args.dead_letter_routing_key
        for message, reason in items:
            try:
                properties, deaths = codec.dead_lettered(
                    message.properties, queue=queue.name, reason=reason,
                    exchange=message.exchange, routing_keys=[message.routing_key], time=now)
            except UndecodableProperties as err:
                # Without x-death a dead-letter cycle could not be detected: drop it.
                log.warning("dead letter dropped: its properties cannot be read or re-encoded",
                            extra={"fields": {"vhost": self.name, "queue": queue.name,
                                              "reason": reason, "detail": str(err)}})
                continue
            routing_key = routing_key_override or message.routing_key
            letter = Message(dlx_name, routing_key, properties, bytes(message.body),
                             persistent=message.persistent, priority=message.priority)
            targets = self.route(exchange, routing_key,
                                 lambda p=properties: codec.headers(p))  # type: ignore[misc]
            for target in targets:
                if reason != "rejected" and is_cycle(target.name, deaths):
                    log.warning("dead-letter cycle dropped a message", extra={"fields": {
                        "vhost": self.name, "queue": target.name, "reason": reason}})
                    continue
                target.publish(letter)

    def totals(self) -> QueueTotals:
        """Lifetime message counters of every queue this vhost has had."""
        totals = QueueTotals().merge(self.retired)
        for queue in self.queues.values():
            totals.add(queue)
        return totals

    def published(self) -> int:
        """Messages published to this vhost's exchanges, over its lifetime."""
        return self.retired_published + sum(
            e.published + e.published_flushed for e in self.exchanges.values())

    def published_bytes(self) -> int:
        """Body bytes published to this vhost's exchanges, over its lifetime."""
        return self.retired_published_bytes + sum(
            e.published_bytes + e.published_bytes_flushed for e in self.exchanges.values())

    def flush_metrics(self) -> None:
        """Copy the per-object counters into Prometheus (called about once a second)."""
        for exchange in self.exchanges.values():
            if exchange.published:
                exchange.metric_messages.inc(exchange.published)
                exchange.metric_bytes.inc(exchange.published_bytes)
                exchange.published_flushed += exchange.published
                exchange.published_bytes_flushed += exchange.published_bytes
                exchange.published = exchange.published_bytes = 0
        for queue in self.queues.values():
            self.flush_queue_metrics(queue)

    def flush_queue_metrics(self, queue: AnyQueue) -> None:
        if queue.delivered:
            queue.metric_messages.inc(queue.delivered)
            queue.metric_bytes.inc(queue.delivered_bytes)
            queue.delivered_flushed += queue.delivered
            queue.delivered = queue.delivered_bytes = 0
        if queue.redelivered:
            metrics.AMQP_MESSAGES_REDELIVERED.labels(self.name, queue.name).inc(queue.redelivered)
            queue.redelivered_flushed += queue.redelivered
            queue.redelivered = 0

    # -- metrics ---------------------------------------------------------------------

    def _bind_exchange_metrics(self, exchange: Exchange) -> None:
        exchange.metric_messages = metrics.MESSAGES_PRODUCED.labels("amqp", "", exchange.name)
        exchange.metric_bytes = metrics.BYTES_PRODUCED.labels("amqp", "", exchange.name)
        _NAMED_METRIC_USERS["exchange", exchange.name] += 1

    def _release_exchange_metrics(self, exchange: Exchange) -> None:
        """A deleted exchange's series go with it, or every name ever declared (server-
        named, per-client) would stay in memory and in /metrics for good."""
        with contextlib.suppress(KeyError):
            metrics.AMQP_MESSAGES_UNROUTABLE.remove(self.name, exchange.name)
        if _last_user("exchange", exchange.name):
            for counter in (metrics.MESSAGES_PRODUCED, metrics.BYTES_PRODUCED):
                with contextlib.suppress(KeyError):
                    counter.remove("amqp", "", exchange.name)

    def _release_queue_metrics(self, queue: AnyQueue) -> None:
        """As _release_exchange_metrics, for a deleted queue (exclusive reply queues come
        and go by the thousand)."""
        with contextlib.suppress(KeyError):
            metrics.AMQP_MESSAGES_REDELIVERED.remove(self.name, queue.name)
        if _last_user("queue", queue.name):
            for counter in (metrics.MESSAGES_CONSUMED, metrics.BYTES_CONSUMED):
                with contextlib.suppress(KeyError):
                    counter.remove("amqp", "", queue.name)

    def _bind_queue_metrics(self, queue: AnyQueue) -> None:
        queue.metric_messages = metrics.MESSAGES_CONSUMED.labels("amqp", "", queue.name)
        queue.metric_bytes = metrics.BYTES_CONSUMED.labels("amqp", "", queue.name)
        _NAMED_METRIC_USERS["queue", queue.name] += 1
        metrics.AMQP_QUEUE_MESSAGES_READY.labels(self.name, queue.name).set_function(
            lambda: float(queue.message_count)
        )
        metrics.AMQP_QUEUE_MESSAGES_UNACKED.labels(self.name, queue.name).set_function(
            lambda: float(queue.unacked)
        )
        metrics.AMQP_QUEUE_CONSUMERS.labels(self.name, queue.name).set_function(
            lambda: float(queue.consumer_count)
        )


    # -- restart -----------------------------------------------------------------------

    def restore_exchange(self, name: str, definition: dict[str, Any]) -> None:
        kind = definition.get("type", "direct")
        cls = EXCHANGE_TYPES.get(kind)
        if cls is None or name in self.exchanges:
            return
        exchange = cls(name, durable=True, auto_delete=bool(definition.get("auto_delete")),
                       internal=bool(definition.get("internal")),
                       arguments=table_from_plain(definition.get("arguments")))
        self.exchanges[name] = exchange
        self._bind_exchange_metrics(exchange)

    def restore_queue(self, name: str, definition: dict[str, Any]) -> None:
        arguments = table_from_plain(definition.get("arguments"))
        auto_delete = bool(definition.get("auto_delete"))
        try:
            args = parse_queue_arguments(arguments, queue=name, vhost=self.name, durable=True,
                                         exclusive=False, auto_delete=auto_delete)
        except PreconditionFailed as err:
            log.error("cannot restore queue: %s", err.text)
            return
        self._new_queue(name, durable=True, exclusive_owner=None, auto_delete=auto_delete,
                        arguments=arguments, args=args)

    def restore_binding(self, source: str, kind: str, destination: str, routing_key: str,
                        arguments: dict[str, Any]) -> None:
        src = self.exchanges.get(source)
        dest: Any = (self.exchanges.get(destination) if kind == "e"
                     else self.queues.get(destination))
        if src is None or dest is None or not src.name:
            return
        if src.bind(dest, routing_key, arguments):
            dest.bound_from.add(src)

    def close(self) -> None:
        for queue in self.queues.values():
            queue.close()


def _show(value: object) -> str:
    if isinstance(value, bool):
        return _flag(value)
    return "none" if value is None else str(value)


def _arg_value(value: object) -> str:
    """How RabbitMQ shows an argument in an inequivalence message."""
    if value is None:
        return "none"
    return f"the value '{_show(value)}' of type '{amqp_type(value)}'"


class VirtualHosts:
    """The vhosts that exist: from configuration, plus those recorded in definitions."""

    def __init__(self, names: Iterable[str], *, definitions: Definitions | None = None,
                 storage: QueueStorage | None = None, codec: PropertyCodec | None = None,
                 memory: MemoryUse | None = None) -> None:
        self.definitions = definitions
        self.storage = storage
        self.codec = codec
        self.memory = memory
        self._vhosts: dict[str, VirtualHost] = {}
        for name in names:
            self._add(name)

    def _add(self, name: str) -> VirtualHost:
        vhost = self._vhosts.get(name)
        if vhost is None:
            vhost = VirtualHost(name, definitions=self.definitions, storage=self.storage,
                                codec=self.codec, memory=self.memory)
            self._vhosts[name] = vhost
        return vhost

    def open(self) -> VirtualHosts:
        """Record the configured vhosts; restore every durable definition and queue log."""
        defs = self.definitions
        if defs is None:
            return self
        for name in self._vhosts:
            if defs.get(VHOSTS, name) is None:
                defs.put(VHOSTS, name, {})
        for name, _value in defs.items(VHOSTS):
            self._add(str(name))
        for (vhost, name), value in _keyed(defs.items(EXCHANGES)):
            self._add(vhost).restore_exchange(name, value)
        for (vhost, name), value in _keyed(defs.items(QUEUES)):
            self._add(vhost).restore_queue(name, value)
        for key, value in defs.items(BINDINGS):
            vhost, source, kind, destination, routing_key, _args_key = key  # type: ignore[misc]
            self._add(vhost).restore_binding(source, kind, destination, routing_key,
                                             table_from_plain(value))
        if self.storage is not None:
            keep = {(v.name, q.name) for v in self._vhosts.values()
                    for q in v.queues.values() if q.on_disk}
            removed = self.storage.collect_garbage(keep)
            if removed:
                log.info("removed logs of deleted queues", extra={"fields": {
                    "count": removed}})
        return self

    def commit(self) -> bool:
        """The commit point: pending appends written (and fsynced with fsync: always)."""
        storage = self.storage
        if storage is None:
            return True
        return storage.commit()

    def close(self) -> None:
        """Broker shutdown: write what is pending; the log directory closes the logs."""
        self.commit()
        for vhost in self._vhosts.values():
            vhost.close()

    def get(self, name: str) -> VirtualHost | None:
        return self._vhosts.get(name)

    def __iter__(self) -> Iterator[VirtualHost]:
        return iter(list(self._vhosts.values()))


def _keyed(items: Iterator[tuple[Any, Any]]) -> Iterator[tuple[tuple[str, str], Any]]:
    for key, value in items:
        if isinstance(key, tuple | list) and len(key) == 2:
            yield (str(key[0]), str(key[1])), value
