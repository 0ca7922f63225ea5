"""The AMQP listener's protocol factory and what all its connections share."""

from __future__ import annotations

import asyncio

from portask.broker.vhosts import VirtualHosts
from portask.config import AmqpSettings, NetworkSettings, Settings
from portask.protocols.amqp.connection import AmqpConnection

# Message counters are copied into Prometheus this often rather than per message.
METRICS_FLUSH_S = 1.0


class AmqpServer:
    def __init__(self, settings: Settings) -> None:
        self.settings: AmqpSettings = settings.amqp
        self.network: NetworkSettings = settings.network
        names = [v.strip() for v in settings.amqp.vhosts.split(",") if v.strip()] or ["/"]
        self.vhosts = VirtualHosts(names)
        self._metrics_timer: asyncio.TimerHandle | None = None

    def connection(self) -> AmqpConnection:
        """Protocol factory for ``Listener.serve``: one AmqpConnection per accepted socket."""
        if self._metrics_timer is None:
            self._flush_metrics()
        return AmqpConnection(self)

    def _flush_metrics(self) -> None:
        for vhost in self.vhosts:
            vhost.flush_metrics()
        loop = asyncio.get_running_loop()
        self._metrics_timer = loop.call_later(METRICS_FLUSH_S, self._flush_metrics)
