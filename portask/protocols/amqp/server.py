"""The AMQP listener: its protocol factory, alarm fan-out and metrics timer.

The composition root (``app.py``) builds the vhosts and the ``AmqpContext`` and
subscribes ``alarms_changed`` to the broker's alarms; this module only serves them.
"""

from __future__ import annotations

import asyncio

from portask.protocols.amqp.connection import AmqpConnection
from portask.protocols.amqp.context import AmqpContext

# Message counters are copied into Prometheus this often rather than per message.
METRICS_FLUSH_S = 1.0


class AmqpServer:
    def __init__(self, context: AmqpContext) -> None:
        self.context = context
        self._metrics_timer: asyncio.TimerHandle | None = None
        self._unblock_scheduled = False

    def connection(self) -> AmqpConnection:
        """Protocol factory for ``Listener.serve``: one AmqpConnection per accepted socket."""
        if self._metrics_timer is None:
            self._flush_metrics()
        return AmqpConnection(self.context)

    def close_all(self) -> None:
        """Broker shutdown: Connection.Close 320 to every client, before logs close."""
        for conn in list(self.context.connections):
            conn.close_gracefully()
        if self._metrics_timer is not None:
            self._metrics_timer.cancel()

    def close_connections(self) -> int:
        """A broker restart as clients see it (the control API): Connection.Close 320 to
        every client; the server goes on accepting."""
        connections = list(self.context.connections)
        for conn in connections:
            conn.close_gracefully()
        return len(connections)

    def close_vhost(self, name: str) -> None:
        """A vhost is being deleted: its connections are closed as RabbitMQ closes them."""
        for conn in list(self.context.connections):
            if conn.vhost is not None and conn.vhost.name == name:
                conn.close_gracefully(f"vhost '{name}' is deleted")

    def alarms_changed(self, active: frozenset[str]) -> None:
        """An ``Alarms`` listener: block publishers on the first alarm, unblock on the last."""
        context = self.context
        was = bool(context.alarms)
        context.alarms = active
        if bool(active) == was:
            return
        for conn in context.connections:
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
        context = self.context
        for conn in list(context.connections):
            if context.alarms:
                return  # set again by what an unblocked connection published
            if conn.blocked:
                conn.unblock()

    def _flush_metrics(self) -> None:
        for vhost in self.context.vhosts:
            vhost.flush_metrics()
        loop = asyncio.get_running_loop()
        self._metrics_timer = loop.call_later(METRICS_FLUSH_S, self._flush_metrics)
