"""Fanout exchange: every bound destination gets every message; keys are ignored."""

from __future__ import annotations

from collections.abc import Iterable

from portask.broker.amqp.exchanges.base import Binding, Destination, Exchange, HeadersSource


class FanoutExchange(Exchange):
    kind = "fanout"

    def __init__(self, name: str, **flags: object) -> None:
        super().__init__(name, **flags)  # type: ignore[arg-type]
        self._routes: tuple[Destination, ...] = ()

    def route(self, routing_key: str, headers: HeadersSource) -> Iterable[Destination]:
        return self._routes

    def _index_add(self, binding: Binding) -> None:
        self._routes = tuple(self.destinations())

    def _index_remove(self, binding: Binding) -> None:
        self._routes = tuple(self.destinations())
