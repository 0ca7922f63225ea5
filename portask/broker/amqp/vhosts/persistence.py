"""What a vhost writes to the durable definitions store: its durable exchanges, durable
non-exclusive queues, and bindings whose both ends are durable. ``registry.VirtualHosts
.open`` replays them at start-up."""

from __future__ import annotations

from typing import Any

from portask.broker.amqp.definitions import table_to_plain
from portask.broker.amqp.exchanges import Exchange
from portask.broker.amqp.exchanges.base import arguments_key
from portask.broker.amqp.policies import Policy
from portask.broker.definitions import BINDINGS, EXCHANGES, POLICIES, QUEUES, Definitions


def is_durable(end: Any) -> bool:
    """An exchange or queue that outlives a restart."""
    if isinstance(end, Exchange):
        return end.durable
    return bool(end.durable) and end.exclusive_owner is None


class VhostDefinitions:
    """One vhost's writes; nothing happens without a definitions store (tests, tools)."""

    def __init__(self, definitions: Definitions | None, vhost: str) -> None:
        self.definitions = definitions
        self.vhost = vhost

    def save_exchange(self, name: str, kind: str, auto_delete: bool, internal: bool,
                      arguments: dict[str, Any]) -> None:
        if self.definitions is not None:
            self.definitions.put(EXCHANGES, (self.vhost, name), {
                "type": kind, "auto_delete": auto_delete, "internal": internal,
                "arguments": table_to_plain(arguments),
            })

    def forget_exchange(self, name: str) -> None:
        if self.definitions is not None:
            self.definitions.delete(EXCHANGES, (self.vhost, name))

    def save_queue(self, name: str, auto_delete: bool, arguments: dict[str, Any]) -> None:
        if self.definitions is not None:
            self.definitions.put(QUEUES, (self.vhost, name), {
                "auto_delete": auto_delete, "arguments": table_to_plain(arguments),
            })

    def forget_queue(self, name: str) -> None:
        if self.definitions is not None:
            self.definitions.delete(QUEUES, (self.vhost, name))

    def save_policy(self, policy: Policy) -> None:
        if self.definitions is not None:
            self.definitions.put(POLICIES, (self.vhost, policy.name), {
                "pattern": policy.pattern, "apply-to": policy.apply_to,
                "priority": policy.priority, "definition": policy.definition})

    def forget_policy(self, name: str) -> None:
        if self.definitions is not None:
            self.definitions.delete(POLICIES, (self.vhost, name))

    def _binding_key(self, source: Exchange, dest: Any, routing_key: str,
                     arguments: dict[str, Any]) -> tuple[str, ...]:
        kind = "e" if isinstance(dest, Exchange) else "q"
        return (self.vhost, source.name, kind, dest.name, routing_key, arguments_key(arguments))

    def save_binding(self, source: Exchange, dest: Any, routing_key: str,
                     arguments: dict[str, Any]) -> None:
        if self.definitions is not None and is_durable(source) and is_durable(dest):
            self.definitions.put(BINDINGS, self._binding_key(source, dest, routing_key,
                                                             arguments),
                                 table_to_plain(arguments))

    def forget_binding(self, source: Exchange, dest: Any, routing_key: str,
                       arguments: dict[str, Any]) -> None:
        if self.definitions is not None and is_durable(source) and is_durable(dest):
            self.definitions.delete(BINDINGS, self._binding_key(source, dest, routing_key,
                                                                arguments))

    def forget_bindings_to(self, source: Exchange, dest: Any) -> None:
        for binding in list(source.bindings.values()):
            if binding.destination is dest:
                self.forget_binding(source, dest, binding.routing_key, binding.arguments)
