# Over 500 lines: RabbitMQ's declare/bind/delete rules and routing are one namespace's.
"""One virtual host: the namespace of exchanges and queues, and the routing between them.

Every declare/bind/delete rule that RabbitMQ enforces lives here, expressed as
``amqp_errors`` exceptions; the protocol layer turns them into reply codes. Durable
exchanges, durable non-exclusive queues and bindings whose both ends are durable are
written through ``persistence.VhostDefinitions``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import logging
import os
import sys
from typing import Any, TypeAlias

from portask import metrics
from portask.broker.alarms import MemoryUse
from portask.broker.amqp.dead_letter import PropertyCodec, UndecodableProperties, is_cycle
from portask.broker.amqp.errors import (
    AccessRefused,
    CommandInvalid,
    NotFound,
    NotImplementedFeature,
    PreconditionFailed,
    ResourceLocked,
)
from portask.broker.amqp.exchanges import EXCHANGE_TYPES, DefaultExchange, Exchange, HeadersSource
from portask.broker.amqp.exchanges.headers import match_mode
from portask.broker.amqp.message_store import (
    MemoryStore,
    MessageStore,
    Publisher,
    QueueStorage,
)
from portask.broker.amqp.policies import Policy, effective_args, winning
from portask.broker.amqp.queue_args import (
    KNOWN_ARGS,
    STREAM,
    QueueArgs,
    amqp_type,
    parse_queue_arguments,
)
from portask.broker.amqp.queues import AmqpQueue, Message, PriorityStore, Queue, StreamQueue
from portask.broker.amqp.vhosts import metrics as vhost_metrics
from portask.broker.amqp.vhosts.metrics import QueueTotals
from portask.broker.amqp.vhosts.persistence import VhostDefinitions, is_durable
from portask.broker.definitions import Definitions

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


class VirtualHost:
    def __init__(self, name: str, *, definitions: Definitions | None = None,
                 storage: QueueStorage | None = None, codec: PropertyCodec | None = None,
                 memory: MemoryUse | None = None) -> None:
        self.name = name
        self.definitions = definitions
        self.saved = VhostDefinitions(definitions, name)
        self.storage = storage
        self.codec = codec
        # What in-memory queue stores hold counts here (the memory alarm).
        self.memory = memory
        self.queues: dict[str, AnyQueue] = {}
        # By name; the winning one per queue is found at declare and when they change.
        self.policies: dict[str, Policy] = {}
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
        vhost_metrics.bind_exchange(self.default_exchange)
        for ex_name, kind in _PREDECLARED:
            exchange = EXCHANGE_TYPES[kind](ex_name, durable=True)
            self.exchanges[ex_name] = exchange
            vhost_metrics.bind_exchange(exchange)

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
        vhost_metrics.bind_exchange(exchange)
        if durable:
            self.saved.save_exchange(name, kind, auto_delete, internal, arguments)
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
        self.remove_exchange(exchange)

    def remove_exchange(self, exchange: Exchange) -> None:
        if exchange.published:
            exchange.metric_messages.inc(exchange.published)
            exchange.metric_bytes.inc(exchange.published_bytes)
        self.retired_published += exchange.published + exchange.published_flushed
        self.retired_published_bytes += exchange.published_bytes + exchange.published_bytes_flushed
        exchange.deleted = True
        self.exchanges.pop(exchange.name, None)
        vhost_metrics.release_exchange(self.name, exchange)
        for binding in exchange.bindings.values():
            self.saved.forget_binding(exchange, binding.destination, binding.routing_key,
                                      binding.arguments)
        if exchange.durable:
            self.saved.forget_exchange(exchange.name)
        for dest in list(exchange.destinations()):
            dest.bound_from.discard(exchange)
        exchange.bindings.clear()
        for source in list(exchange.bound_from):
            self.saved.forget_bindings_to(source, exchange)
            source.unbind_destination(exchange)
            self._auto_delete_exchange(source)
        exchange.bound_from.clear()

    def _auto_delete_exchange(self, exchange: Exchange) -> None:
        if exchange.auto_delete and not exchange.bindings and not exchange.deleted:
            self.remove_exchange(exchange)

    def bind_exchange(
        self, destination: str, source: str, routing_key: str, arguments: dict[str, Any]
    ) -> None:
        dest = self._bindable(destination, "destination")
        src = self._bindable(source, "source")
        self._check_binding_arguments(src, arguments)
        if src.bind(dest, routing_key, arguments):
            dest.bound_from.add(src)
            self.saved.save_binding(src, dest, routing_key, arguments)

    def unbind_exchange(
        self, destination: str, source: str, routing_key: str, arguments: dict[str, Any]
    ) -> None:
        # Idempotent, as in RabbitMQ 3.x: a missing end means there is no such binding.
        self._check_not_default(destination)
        self._check_not_default(source)
        dest = self.exchanges.get(destination)
        src = self.exchanges.get(source)
        if dest is not None and src is not None and src.unbind(dest, routing_key, arguments):
            self.saved.forget_binding(src, dest, routing_key, arguments)
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
        if (existing is not None and existing.yields_name
                and arguments.get("x-queue-type") != STREAM):
            log.info("queue declared under a Kafka topic stream's name; the topic is no "
                     "longer a stream under it", extra={"fields": {"vhost": self.name,
                                                                    "queue": name}})
            self.remove_queue(existing)
            existing = None
        if existing is not None:
            self._check_owner(existing, owner)
            self._check_queue_equivalent(existing, durable, exclusive, auto_delete, arguments)
            existing.touch()
            return existing
        args = parse_queue_arguments(arguments, queue=name, vhost=self.name, durable=durable,
                                     exclusive=exclusive, auto_delete=auto_delete)
        queue = self.new_queue(name, durable=durable,
                                exclusive_owner=owner if exclusive else None,
                                auto_delete=auto_delete, arguments=arguments, args=args)
        self.queues_created += 1
        if is_durable(queue):
            self.saved.save_queue(name, auto_delete, arguments)
        return queue

    def new_queue(self, name: str, *, durable: bool, exclusive_owner: object | None,
                   auto_delete: bool, arguments: dict[str, Any], args: QueueArgs) -> AnyQueue:
        storage = self.storage
        on_disk = durable and exclusive_owner is None and storage is not None
        queue: AnyQueue
        if args.kind != STREAM:
            args = effective_args(args, arguments, self.queue_policy(name))
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
        vhost_metrics.bind_queue(self.name, queue)
        queue.touch()
        return queue

    # -- policies --------------------------------------------------------------------

    def queue_policy(self, name: str) -> Policy | None:
        """The policy in force on a queue of this name, if any."""
        return winning(list(self.policies.values()), "queue", name) if self.policies \
            else None

    def exchange_policy(self, name: str) -> Policy | None:
        return winning(list(self.policies.values()), "exchange", name) if self.policies \
            else None

    def set_policy(self, policy: Policy) -> None:
        """Add or replace a policy; queues it now (or no longer) matches change at once."""
        self.policies[policy.name] = policy
        self.saved.save_policy(policy)
        self.apply_policies()

    def clear_policy(self, name: str) -> bool:
        if self.policies.pop(name, None) is None:
            return False
        self.saved.forget_policy(name)
        self.apply_policies()
        return True

    def apply_policies(self) -> None:
        """Each classic (or quorum) queue's settings recomputed from its arguments and
        the policy that now wins; streams take no policy here."""
        for queue in list(self.queues.values()):
            if not isinstance(queue, Queue) or queue.args.kind == STREAM:
                continue
            declared = parse_queue_arguments(
                queue.arguments, queue=queue.name, vhost=self.name, durable=queue.durable,
                exclusive=queue.exclusive, auto_delete=queue.auto_delete)
            queue.apply_args(effective_args(declared, queue.arguments,
                                            self.queue_policy(queue.name)))

    def attach_queue(self, queue: AnyQueue) -> None:
        """A queue made outside the declare path (a Kafka topic's partition as a stream);
        not written to the definitions store: its owner recreates it at start-up."""
        self.queues[queue.name] = queue
        vhost_metrics.bind_queue(self.name, queue)

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
            self.saved.save_binding(exchange, queue, routing_key, arguments)

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
            self.saved.forget_binding(exchange, queue, routing_key, arguments)
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
        refusal = queue.delete_refusal()
        if refusal is not None:
            raise refusal
        if if_unused and queue.consumers:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' in use")
        if if_empty and queue.message_count:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' not empty")
        return self.remove_queue(queue)

    def remove_queue(self, queue: AnyQueue) -> int:
        """Delete a queue, cancel its consumers and drop its bindings; returns messages lost."""
        if queue.deleted:
            return 0
        vhost_metrics.flush_queue(self.name, queue)
        self.queues.pop(queue.name, None)
        self.queues_deleted += 1
        self.retired.add(queue)
        count, consumers = queue.delete()
        if is_durable(queue):
            self.saved.forget_queue(queue.name)
        for consumer in consumers:
            consumer.queue_deleted(queue)  # type: ignore[arg-type]
        for exchange in list(queue.bound_from):
            self.saved.forget_bindings_to(exchange, queue)
            exchange.unbind_destination(queue)
            self._auto_delete_exchange(exchange)
        queue.bound_from.clear()
        if queue.on_disk and self.storage is not None:
            self.storage.remove_queue(self.name, queue.name)
        for gauge in (metrics.AMQP_QUEUE_MESSAGES_READY, metrics.AMQP_QUEUE_MESSAGES_UNACKED,
                      metrics.AMQP_QUEUE_CONSUMERS):
            with contextlib.suppress(KeyError):
                gauge.remove(self.name, queue.name)
        vhost_metrics.release_queue(self.name, queue)
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

    def memory_room(self, message_bytes: int) -> int:
        """How many messages of ``message_bytes`` (body and properties) may be published
        in one go: up to and including the one that would take the memory alarm's
        watermark, where RabbitMQ's rule blocks the publisher."""
        memory = self.memory
        if memory is None or memory.limit == sys.maxsize:
            return sys.maxsize
        return max((memory.limit - memory.bytes) // max(message_bytes, 1) + 1, 1)

    def publish_many(self, exchange: Exchange, messages: list[Message],
                     headers: HeadersSource) -> tuple[int, int]:
        """``publish`` of messages a plain publisher (no confirms) sent in one run: the
        same exchange, routing key, properties and body size, so routed once. (Queues
        each reached, how many of the messages were taken): all, unless the memory
        alarm went off on one, which is then the last taken (RabbitMQ's rule)."""
        count = len(messages)
        storage = self.storage
        if storage is not None:
            storage.publisher = None
        routing_key = messages[0].routing_key
        if not exchange.exchange_bindings and not exchange.alternate_exchange:
            queues = exchange.route(routing_key, headers)
        else:
            queues = self.route(exchange, routing_key, headers)
        reached = len(queues)  # type: ignore[arg-type]
        taken = count
        # A queue takes the run whole when its memory use is known in advance (the run
        # was cut at the alarm's watermark for it); otherwise message by message, as
        # publish() goes, which also keeps the deliveries of several queues interleaved.
        whole = reached == 1 and next(iter(queues)).publish_many(messages)  # type: ignore[union-attr]
        if reached and not whole:
            memory = self.memory
            taken = 0
            for message in messages:
                for queue in queues:
                    queue.publish(message)  # type: ignore[union-attr]
                taken += 1
                if memory is not None and memory.alarmed:
                    break
        elif not reached:
            self.unroutable += count
            metrics.AMQP_MESSAGES_UNROUTABLE.labels(self.name, exchange.name).inc(count)
        size = len(messages[0].body)
        exchange.published += taken
        exchange.published_bytes += size * taken
        self.size_counts[(size - 1).bit_length()] += taken
        return reached, taken

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
            vhost_metrics.flush_queue(self.name, queue)

    def close(self) -> None:
        for queue in self.queues.values():
            queue.close()


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _show(value: object) -> str:
    if isinstance(value, bool):
        return _flag(value)
    return "none" if value is None else str(value)


def _arg_value(value: object) -> str:
    """How RabbitMQ shows an argument in an inequivalence message."""
    if value is None:
        return "none"
    return f"the value '{_show(value)}' of type '{amqp_type(value)}'"
