"""Direct exchange: a message goes to every binding whose key equals its routing key."""

from __future__ import annotations

from collections.abc import Iterable

from portask.broker.amqp.exchanges.base import Binding, Destination, Exchange, HeadersSource


class DirectExchange(Exchange):
    kind = "direct"

    def __init__(self, name: str, **flags: object) -> None:
        super().__init__(name, **flags)  # type: ignore[arg-type]
        # key -> destination id -> (destination, number of bindings with that key)
        self._by_key: dict[str, dict[int, list[object]]] = {}
        self._routes: dict[str, tuple[Destination, ...]] = {}

    def route(self, routing_key: str, headers: HeadersSource) -> Iterable[Destination]:
        return self._routes.get(routing_key, ())

    def _index_add(self, binding: Binding) -> None:
        dests = self._by_key.setdefault(binding.routing_key, {})
        entry = dests.setdefault(id(binding.destination), [binding.destination, 0])
        entry[1] += 1  # type: ignore[operator]
        self._refresh(binding.routing_key)

    def _index_remove(self, binding: Binding) -> None:
        dests = self._by_key.get(binding.routing_key, {})
        entry = dests.get(id(binding.destination))
        if entry is not None:
            entry[1] -= 1  # type: ignore[operator]
            if entry[1] == 0:
                del dests[id(binding.destination)]
        if not dests:
            self._by_key.pop(binding.routing_key, None)
        self._refresh(binding.routing_key)

    def _refresh(self, key: str) -> None:
        dests = self._by_key.get(key)
        if dests:
            self._routes[key] = tuple(entry[0] for entry in dests.values())  # type: ignore[misc]
        else:
            self._routes.pop(key, None)
