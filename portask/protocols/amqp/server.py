"""The AMQP listener's protocol factory and what all its connections share."""

from __future__ import annotations

import asyncio

from portask.broker.alarms import DISK, MEMORY
from portask.broker.clients import Clients
from portask.broker.core import Broker
from portask.broker.message_store import QueueStorage
from portask.broker.vhosts import VirtualHosts
from portask.config import AmqpSettings, NetworkSettings, Settings
from portask.protocols.amqp.connection import AmqpConnection
from portask.protocols.amqp.properties import AmqpPropertyCodec

# Message counters are copied into Prometheus this often rather than per message.
METRICS_FLUSH_S = 1.0


class AmqpServer:
    def __init__(self, settings: Settings, broker: Broker | None = None) -> None:
        """Without a broker (unit tests) definitions and messages live in memory only."""
        self.settings: AmqpSettings = settings.amqp
        self.network: NetworkSettings = settings.network
        names = [v.strip() for v in settings.amqp.vhosts.split(",") if v.strip()] or ["/"]
        storage = None
        if broker is not None:
            storage = QueueStorage(broker.logs, fsync_always=settings.storage.fsync == "always",
                                   segment_bytes=int(settings.amqp.queue_segment_bytes))
        self.vhosts = VirtualHosts(
            names, definitions=broker.definitions if broker is not None else None,
            storage=storage, codec=AmqpPropertyCodec(),
            memory=broker.alarms.memory if broker is not None else None,
        ).open()
        self.connections: set[AmqpConnection] = set()
        # The broker's view of who is connected (management API, metrics).
        self.clients = broker.clients if broker is not None else Clients()
        self._metrics_timer: asyncio.TimerHandle | None = None
        # Resource alarms (memory, disk) in effect; a connection that publishes while
        # any is set stops being read (see AmqpConnection.block).
        self.alarms: frozenset[str] = frozenset()
        self._unblock_scheduled = False
        if broker is not None:
            broker.amqp = self.vhosts
            self.alarms = frozenset(broker.alarms.active)
            broker.alarms.subscribe(self._alarms_changed)

    def connection(self) -> AmqpConnection:
        """Protocol factory for ``Listener.serve``: one AmqpConnection per accepted socket."""
        if self._metrics_timer is None:
            self._flush_metrics()
        return AmqpConnection(self)

    def close_all(self) -> None:
        """Broker shutdown: Connection.Close 320 to every client, before logs close."""
        for conn in list(self.connections):
            conn.close_gracefully()
        if self._metrics_timer is not None:
            self._metrics_timer.cancel()

    @property
    def blocked_reason(self) -> str:
        """RabbitMQ's Connection.Blocked reason: "low on memory", "low on memory & disk"."""
        return "low on " + " & ".join(r for r in (MEMORY, DISK) if r in self.alarms)

    def _alarms_changed(self, active: frozenset[str]) -> None:
        was = bool(self.alarms)
        self.alarms = active
        if bool(active) == was:
            return
        for conn in self.connections:
            conn.alarm = bool(active)
        if not active and not self._unblock_scheduled:
            # Not from inside the call that cleared it (an ack on another connection):
            # unblocked connections go on to parse what they buffered, which publishes.
            self._unblock_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self._unblock)
            except RuntimeError:  # no loop: nothing is connected either
                self._unblock()

    def _unblock(self) -> None:
        self._unblock_scheduled = False
        for conn in list(self.connections):
            if self.alarms:
                return  # set again by what an unblocked connection published
            if conn.blocked:
                conn.unblock()

    def _flush_metrics(self) -> None:
        for vhost in self.vhosts:
            vhost.flush_metrics()
        loop = asyncio.get_running_loop()
        self._metrics_timer = loop.call_later(METRICS_FLUSH_S, self._flush_metrics)
