"""The default (nameless) exchange: the routing key names the queue.

It has no bindings of its own; every queue is implicitly bound under its name, and
clients may neither bind to it nor delete it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from portask.broker.amqp.exchanges.base import Binding, Destination, Exchange, HeadersSource

if TYPE_CHECKING:
    from portask.broker.amqp.queues.base import AmqpQueue


class DefaultExchange(Exchange):
    kind = "direct"

    def __init__(self, find_queue: Callable[[str], AmqpQueue | None]) -> None:
        super().__init__("", durable=True)
        self._find_queue = find_queue

    def route(self, routing_key: str, headers: HeadersSource) -> Iterable[Destination]:
        queue = self._find_queue(routing_key)
        return (queue,) if queue is not None else ()

    def _index_add(self, binding: Binding) -> None:
        raise AssertionError("the vhost refuses bindings to the default exchange")

    def _index_remove(self, binding: Binding) -> None:
        raise AssertionError("the default exchange has no bindings")
