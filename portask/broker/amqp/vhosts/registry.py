"""VirtualHosts: the vhosts that exist, their start-up from the durable definitions, and
the commit point of their queue storage."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from portask.broker.alarms import MemoryUse
from portask.broker.amqp.dead_letter import PropertyCodec
from portask.broker.amqp.definitions import table_from_plain
from portask.broker.amqp.errors import PreconditionFailed
from portask.broker.amqp.exchanges import EXCHANGE_TYPES
from portask.broker.amqp.message_store import QueueStorage
from portask.broker.amqp.policies import InvalidPolicy, parse_policy
from portask.broker.amqp.queue_args import parse_queue_arguments
from portask.broker.amqp.vhosts import metrics as vhost_metrics
from portask.broker.amqp.vhosts.vhost import VirtualHost
from portask.broker.definitions import (
    BINDINGS,
    EXCHANGES,
    POLICIES,
    QUEUES,
    VHOSTS,
    Definitions,
)

log = logging.getLogger("portask.amqp")


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
        # Told the name of a vhost being deleted, before its objects go (the AMQP server
        # closes its connections, the user store drops its permissions).
        self.deleting: list[Callable[[str], None]] = []
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
        for (vhost, name), value in _keyed(defs.items(POLICIES)):
            try:
                policy = parse_policy(vhost, name, dict(value))
            except InvalidPolicy as err:
                log.error("cannot restore policy %s: %s", name, err)
                continue
            self._add(vhost).policies[name] = policy
        for (vhost, name), value in _keyed(defs.items(EXCHANGES)):
            _restore_exchange(self._add(vhost), name, value)
        for (vhost, name), value in _keyed(defs.items(QUEUES)):
            _restore_queue(self._add(vhost), name, value)
        for key, value in defs.items(BINDINGS):
            vhost, source, kind, destination, routing_key, _args_key = key  # type: ignore[misc]
            _restore_binding(self._add(vhost), source, kind, destination, routing_key,
                                             table_from_plain(value))
        if self.storage is not None:
            keep = {(v.name, q.name) for v in self._vhosts.values()
                    for q in v.queues.values() if q.on_disk}
            removed = self.storage.collect_garbage(keep)
            if removed:
                log.info("removed logs of deleted queues", extra={"fields": {
                    "count": removed}})
        return self

    def create(self, name: str) -> VirtualHost:
        """A vhost made at run time (management API, definitions, control API); recorded
        in the definitions, so it is there after a restart. An existing one is returned."""
        if not name:
            raise ValueError("a vhost needs a name")
        vhost = self._vhosts.get(name)
        if vhost is None:
            vhost = self._add(name)
            if self.definitions is not None:
                self.definitions.put(VHOSTS, name, {})
        return vhost

    def delete(self, name: str) -> bool:
        """Delete a vhost with everything in it: its connections are closed first (by the
        ``deleting`` listeners), then its queues (and their logs), exchanges and policies."""
        vhost = self._vhosts.get(name)
        if vhost is None:
            return False
        for listener in list(self.deleting):
            listener(name)
        storage = self.storage
        with (storage.removing_vhost(name) if storage is not None
              else contextlib.nullcontext()):
            for queue in list(vhost.queues.values()):
                vhost.remove_queue(queue)
        for exchange in list(vhost.exchanges.values()):
            if exchange.name:
                vhost.remove_exchange(exchange)
        for policy in list(vhost.policies):
            vhost.saved.forget_policy(policy)
        vhost.policies.clear()
        self.commit()
        vhost.close()
        del self._vhosts[name]
        if self.definitions is not None:
            self.definitions.delete(VHOSTS, name)
        log.info("vhost deleted", extra={"fields": {"vhost": name}})
        return True

    def restore_bindings_to(self, vhost: str, queues: list[str]) -> None:
        """Replay the durable bindings to queues that exist only once another part of
        the broker has added them (a Kafka topic's streams, after the topics open)."""
        if self.definitions is None or not queues:
            return
        wanted = set(queues)
        target = self._vhosts.get(vhost)
        if target is None:
            return
        for key, value in self.definitions.items(BINDINGS):
            v, source, kind, destination, routing_key, _args_key = key  # type: ignore[misc]
            if v == vhost and kind == "q" and destination in wanted:
                _restore_binding(target, source, kind, destination, routing_key,
                                 table_from_plain(value))

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


# -- restart: replaying one vhost's durable definitions ------------------------


def _restore_exchange(vhost: VirtualHost, name: str, definition: dict[str, Any]) -> None:
    kind = definition.get("type", "direct")
    cls = EXCHANGE_TYPES.get(kind)
    if cls is None or name in vhost.exchanges:
        return
    exchange = cls(name, durable=True, auto_delete=bool(definition.get("auto_delete")),
                   internal=bool(definition.get("internal")),
                   arguments=table_from_plain(definition.get("arguments")))
    vhost.exchanges[name] = exchange
    vhost_metrics.bind_exchange(exchange)


def _restore_queue(vhost: VirtualHost, name: str, definition: dict[str, Any]) -> None:
    arguments = table_from_plain(definition.get("arguments"))
    auto_delete = bool(definition.get("auto_delete"))
    try:
        args = parse_queue_arguments(arguments, queue=name, vhost=vhost.name, durable=True,
                                     exclusive=False, auto_delete=auto_delete)
    except PreconditionFailed as err:
        log.error("cannot restore queue: %s", err.text)
        return
    vhost.new_queue(name, durable=True, exclusive_owner=None, auto_delete=auto_delete,
                    arguments=arguments, args=args)


def _restore_binding(vhost: VirtualHost, source: str, kind: str, destination: str,
                     routing_key: str, arguments: dict[str, Any]) -> None:
    src = vhost.exchanges.get(source)
    dest: Any = (vhost.exchanges.get(destination) if kind == "e"
                 else vhost.queues.get(destination))
    if src is None or dest is None or not src.name:
        return
    if src.bind(dest, routing_key, arguments):
        dest.bound_from.add(src)
