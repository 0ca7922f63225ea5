"""What every exchange type shares: identity, flags, arguments and its binding set.

Subclasses keep their own index of the bindings for fast routing and answer
``route(routing_key, headers)`` with the destinations (queues or exchanges) that match.
Exchange-to-exchange hops, alternate exchanges and de-duplication are the vhost's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

if TYPE_CHECKING:
    from portask.broker.amqp.queues.base import AmqpQueue

Destination: TypeAlias = "AmqpQueue | Exchange"
# Called only by exchanges that look at headers, so other routes never decode properties.
HeadersSource: TypeAlias = Callable[[], dict[str, Any] | None]


def arguments_key(arguments: dict[str, Any] | None) -> str:
    """A hashable, order-independent identity for a binding's arguments table."""
    if not arguments:
        return ""
    return repr(sorted(arguments.items(), key=lambda kv: kv[0]))


@dataclass(eq=False)
class Binding:
    destination: Destination
    routing_key: str
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, str, str]:
        return (id(self.destination), self.routing_key, arguments_key(self.arguments))


class Exchange:
    kind: ClassVar[str] = ""

    def __init__(
        self,
        name: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments: dict[str, Any] = dict(arguments or {})
        self.bindings: dict[tuple[int, str, str], Binding] = {}
        # Exchanges that bind to this one, so deleting it can drop those bindings too.
        self.bound_from: set[Exchange] = set()
        self.deleted = False
        ae = self.arguments.get("alternate-exchange")
        self.alternate_exchange: str | None = ae if isinstance(ae, str) and ae else None
        # Bindings whose destination is an exchange; zero means one routing hop suffices.
        self.exchange_bindings = 0
        # Counted here and copied to Prometheus once a second, off the per-message path.
        self.published = 0
        self.published_bytes = 0
        # What earlier flushes moved to Prometheus: the lifetime total is the sum.
        self.published_flushed = 0
        self.published_bytes_flushed = 0
        self.metric_messages: Any = None
        self.metric_bytes: Any = None

    def bind(self, destination: Destination, routing_key: str, arguments: dict[str, Any]) -> bool:
        """Add a binding; False when an identical one already exists (binding is idempotent)."""
        binding = Binding(destination, routing_key, dict(arguments or {}))
        if binding.key in self.bindings:
            return False
        self.bindings[binding.key] = binding
        if isinstance(destination, Exchange):
            self.exchange_bindings += 1
        self._index_add(binding)
        return True

    def unbind(self, destination: Destination, routing_key: str, arguments: dict[str, Any]) -> bool:
        binding = self.bindings.pop(
            (id(destination), routing_key, arguments_key(arguments)), None
        )
        if binding is None:
            return False
        if isinstance(destination, Exchange):
            self.exchange_bindings -= 1
        self._index_remove(binding)
        return True

    def unbind_destination(self, destination: Destination) -> int:
        """Drop every binding to a destination that is being deleted."""
        gone = [b for b in self.bindings.values() if b.destination is destination]
        for binding in gone:
            del self.bindings[binding.key]
            if isinstance(destination, Exchange):
                self.exchange_bindings -= 1
            self._index_remove(binding)
        return len(gone)

    def has_binding_to(self, destination: Destination) -> bool:
        return any(b.destination is destination for b in self.bindings.values())

    def destinations(self) -> Iterable[Destination]:
        return {id(b.destination): b.destination for b in self.bindings.values()}.values()

    def route(self, routing_key: str, headers: HeadersSource) -> Iterable[Destination]:
        raise NotImplementedError

    def _index_add(self, binding: Binding) -> None:
        raise NotImplementedError

    def _index_remove(self, binding: Binding) -> None:
        raise NotImplementedError
