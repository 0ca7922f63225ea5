"""Virtual hosts: the namespace of exchanges and queues, and the routing between them.

Every declare/bind/delete rule that RabbitMQ enforces lives here, expressed as
``amqp_errors`` exceptions; the protocol layer turns them into reply codes.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterable
from typing import Any

from portask import metrics
from portask.broker.amqp_errors import (
    AccessRefused,
    CommandInvalid,
    NotFound,
    NotImplementedFeature,
    PreconditionFailed,
    ResourceLocked,
)
from portask.broker.exchanges import EXCHANGE_TYPES, DefaultExchange, Exchange, HeadersSource
from portask.broker.exchanges.headers import match_mode
from portask.broker.queues import Message, Queue

# The predeclared exchanges every RabbitMQ vhost has.
_PREDECLARED = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)
# Queue arguments RabbitMQ gives meaning to that this build does not implement yet:
# refusing them is honest, silently ignoring a TTL or a length limit is not.
_UNIMPLEMENTED_QUEUE_ARGS = frozenset({
    "x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-overflow",
    "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority",
    "x-single-active-consumer", "x-queue-mode", "x-queue-master-locator",
    "x-stream-max-segment-size-bytes", "x-max-age", "x-delivery-limit",
})


def _flag(value: bool) -> str:
    return "true" if value else "false"


class VirtualHost:
    def __init__(self, name: str) -> None:
        self.name = name
        self.queues: dict[str, Queue] = {}
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
            if existing is None:
                raise NotFound(f"no exchange '{name}' in vhost '{self.name}'")
            return existing
        if name == "" or name.startswith("amq."):
            if existing is not None and existing.kind == kind and name:
                return existing
            raise AccessRefused(
                f"exchange name '{name}' contains reserved prefix 'amq.*'"
                if name else "operation not permitted on the default exchange"
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
        if name == "" or name.startswith("amq."):
            raise AccessRefused(f"operation not permitted on exchange '{name}'")
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
        exchange.deleted = True
        self.exchanges.pop(exchange.name, None)
        for dest in list(exchange.destinations()):
            dest.bound_from.discard(exchange)
        exchange.bindings.clear()
        for source in list(exchange.bound_from):
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

    def unbind_exchange(
        self, destination: str, source: str, routing_key: str, arguments: dict[str, Any]
    ) -> None:
        dest = self._bindable(destination, "destination")
        src = self._bindable(source, "source")
        if src.unbind(dest, routing_key, arguments):
            if not src.has_binding_to(dest):
                dest.bound_from.discard(src)
            self._auto_delete_exchange(src)

    def _bindable(self, name: str, role: str) -> Exchange:
        if name == "":
            raise AccessRefused("operation not permitted on the default exchange")
        return self.exchange(name)

    def _check_binding_arguments(self, exchange: Exchange, arguments: dict[str, Any]) -> None:
        if exchange.kind == "headers" and match_mode(arguments) is None:
            raise PreconditionFailed(
                f"invalid x-match field value {arguments.get('x-match')!r}; expected all, "
                "any, all-with-x or any-with-x"
            )

    # -- queues ----------------------------------------------------------------------

    def queue(self, name: str, owner: object) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            raise NotFound(f"no queue '{name}' in vhost '{self.name}'")
        self._check_owner(queue, owner)
        return queue

    def _check_owner(self, queue: Queue, owner: object) -> None:
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
    ) -> Queue:
        arguments = dict(arguments or {})
        if passive:
            if not name:
                raise NotFound(f"no queue '' in vhost '{self.name}'")
            return self.queue(name, owner)
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
            return existing
        self._check_queue_arguments(arguments)
        queue = Queue(name, durable=durable, exclusive_owner=owner if exclusive else None,
                      auto_delete=auto_delete, arguments=arguments)
        self.queues[name] = queue
        self._bind_queue_metrics(queue)
        return queue

    def _generated_name(self) -> str:
        while True:
            name = "amq.gen-" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
            if name not in self.queues:
                return name

    def _check_queue_arguments(self, arguments: dict[str, Any]) -> None:
        for key in arguments:
            if key in _UNIMPLEMENTED_QUEUE_ARGS:
                raise NotImplementedFeature(f"queue argument '{key}' is not implemented yet")
        kind = arguments.get("x-queue-type", "classic")
        if kind != "classic":
            raise NotImplementedFeature(f"x-queue-type '{kind}' is not implemented yet")

    def _check_queue_equivalent(
        self, queue: Queue, durable: bool, exclusive: bool, auto_delete: bool,
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
        for key in set(arguments) | set(queue.arguments):
            if key.startswith("x-") and arguments.get(key) != queue.arguments.get(key):
                raise PreconditionFailed(
                    f"inequivalent arg '{key}' for queue '{queue.name}' in vhost "
                    f"'{self.name}': received {_show(arguments.get(key))} but current is "
                    f"{_show(queue.arguments.get(key))}"
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

    def unbind_queue(
        self, queue_name: str, exchange_name: str, routing_key: str, arguments: dict[str, Any],
        owner: object,
    ) -> None:
        queue = self.queue(queue_name, owner)
        exchange = self._bindable(exchange_name, "source")
        if exchange.unbind(queue, routing_key, arguments):
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
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' is not empty")
        return self.remove_queue(queue)

    def remove_queue(self, queue: Queue) -> int:
        """Delete a queue, cancel its consumers and drop its bindings; returns messages lost."""
        if queue.deleted:
            return 0
        self.flush_queue_metrics(queue)
        self.queues.pop(queue.name, None)
        count, consumers = queue.delete()
        for consumer in consumers:
            consumer.queue_deleted(queue)
        for exchange in list(queue.bound_from):
            exchange.unbind_destination(queue)
            self._auto_delete_exchange(exchange)
        queue.bound_from.clear()
        for gauge in (metrics.AMQP_QUEUE_MESSAGES_READY, metrics.AMQP_QUEUE_MESSAGES_UNACKED,
                      metrics.AMQP_QUEUE_CONSUMERS):
            with contextlib.suppress(KeyError):
                gauge.remove(self.name, queue.name)
        return count

    def connection_closed(self, owner: object) -> None:
        """Exclusive queues live exactly as long as the connection that declared them."""
        for queue in [q for q in self.queues.values() if q.exclusive_owner is owner]:
            self.remove_queue(queue)

    # -- routing ---------------------------------------------------------------------

    def route(self, exchange: Exchange, routing_key: str, headers: HeadersSource) -> list[Queue]:
        """The queues a message reaches, following exchange bindings and alternate exchanges."""
        found: dict[int, Queue] = {}
        seen: set[int] = set()
        self._route_into(exchange, routing_key, headers, found, seen)
        return list(found.values())

    def _route_into(
        self, exchange: Exchange, routing_key: str, headers: HeadersSource,
        found: dict[int, Queue], seen: set[int],
    ) -> None:
        seen.add(id(exchange))
        before = len(found)
        matched = False
        for dest in exchange.route(routing_key, headers):
            matched = True
            if isinstance(dest, Queue):
                found[id(dest)] = dest
            elif id(dest) not in seen:
                self._route_into(dest, routing_key, headers, found, seen)
        if (not matched or len(found) == before) and exchange.alternate_exchange:
            alternate = self.exchanges.get(exchange.alternate_exchange)
            if alternate is not None and id(alternate) not in seen:
                self._route_into(alternate, routing_key, headers, found, seen)

    def publish(self, exchange: Exchange, message: Message, headers: HeadersSource) -> int:
        """Route and enqueue; returns how many queues took the message."""
        exchange.published += 1
        exchange.published_bytes += len(message.body)
        destinations = exchange.route(message.routing_key, headers)
        # Fast path: one hop straight to queues, which is nearly every publish.
        if not exchange.exchange_bindings and not exchange.alternate_exchange:
            for queue in destinations:
                queue.publish(message)  # type: ignore[union-attr]
            count = len(destinations)  # type: ignore[arg-type]
        else:
            queues = self.route(exchange, message.routing_key, headers)
            for queue in queues:
                queue.publish(message)
            count = len(queues)
        if not count:
            metrics.AMQP_MESSAGES_UNROUTABLE.labels(self.name, exchange.name).inc()
        return count

    def flush_metrics(self) -> None:
        """Copy the per-object counters into Prometheus (called about once a second)."""
        for exchange in self.exchanges.values():
            if exchange.published:
                exchange.metric_messages.inc(exchange.published)
                exchange.metric_bytes.inc(exchange.published_bytes)
                exchange.published = exchange.published_bytes = 0
        for queue in self.queues.values():
            self.flush_queue_metrics(queue)

    def flush_queue_metrics(self, queue: Queue) -> None:
        if queue.delivered:
            queue.metric_messages.inc(queue.delivered)
            queue.metric_bytes.inc(queue.delivered_bytes)
            queue.delivered = queue.delivered_bytes = 0
        if queue.redelivered:
            metrics.AMQP_MESSAGES_REDELIVERED.labels(self.name, queue.name).inc(queue.redelivered)
            queue.redelivered = 0

    # -- metrics ---------------------------------------------------------------------

    def _bind_exchange_metrics(self, exchange: Exchange) -> None:
        exchange.metric_messages = metrics.MESSAGES_PRODUCED.labels("amqp", "", exchange.name)
        exchange.metric_bytes = metrics.BYTES_PRODUCED.labels("amqp", "", exchange.name)

    def _bind_queue_metrics(self, queue: Queue) -> None:
        queue.metric_messages = metrics.MESSAGES_CONSUMED.labels("amqp", "", queue.name)
        queue.metric_bytes = metrics.BYTES_CONSUMED.labels("amqp", "", queue.name)
        metrics.AMQP_QUEUE_MESSAGES_READY.labels(self.name, queue.name).set_function(
            lambda: float(queue.message_count)
        )
        metrics.AMQP_QUEUE_MESSAGES_UNACKED.labels(self.name, queue.name).set_function(
            lambda: float(queue.unacked)
        )
        metrics.AMQP_QUEUE_CONSUMERS.labels(self.name, queue.name).set_function(
            lambda: float(queue.consumer_count)
        )


def _show(value: object) -> str:
    if isinstance(value, bool):
        return _flag(value)
    return "none" if value is None else str(value)


class VirtualHosts:
    """The vhosts that exist; created from configuration at start-up."""

    def __init__(self, names: Iterable[str]) -> None:
        self._vhosts = {name: VirtualHost(name) for name in names}

    def get(self, name: str) -> VirtualHost | None:
        return self._vhosts.get(name)

    def __iter__(self) -> Iterable[VirtualHost]:  # type: ignore[override]
        return iter(self._vhosts.values())
