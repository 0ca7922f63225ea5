"""The AMQP listener's protocol factory and what all its connections share."""

from __future__ import annotations

import asyncio

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
        ).open()
        if broker is not None:
            broker.amqp = self.vhosts
        self.connections: set[AmqpConnection] = set()
        self._metrics_timer: asyncio.TimerHandle | None = None

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

    def _flush_metrics(self) -> None:
        for vhost in self.vhosts:
            vhost.flush_metrics()
        loop = asyncio.get_running_loop()
        self._metrics_timer = loop.call_later(METRICS_FLUSH_S, self._flush_metrics)
