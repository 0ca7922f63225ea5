"""RabbitMQ's management HTTP API (3.10), on its own listener (``http.management_port``).

One module per resource family registers its routes: ``node`` (overview, whoami,
nodes, extensions, cluster-name, aliveness-test, health checks), ``queues``,
``exchanges``, ``bindings``, ``access`` (vhosts, users, permissions),
``topic_permissions``, ``clients``
(connections, channels, consumers), ``definitions`` (export and import) and
``policies``. ``api`` routes, authenticates
(Basic, users from ``auth.users`` and ``amqp.default_user``) and shapes errors;
``query`` applies the list parameters; ``view`` is the one door to the broker;
``stats`` keeps the samples behind ``_details.rate``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from portask.http.management import (
    access,
    bindings,
    clients,
    definitions,
    exchanges,
    node,
    policies,
    queues,
    topic_permissions,
)
from portask.http.management.api import Api, Router
from portask.http.management.stats import SAMPLE_S
from portask.http.management.view import BrokerView
from portask.listeners import Listener

if TYPE_CHECKING:
    from portask.broker.core import Broker
    from portask.config import Settings

# RabbitMQ's default max_http_body_size (10 MiB): a published message or a definitions
# file fits; anything larger is refused with 413 before it is buffered.
MAX_BODY_BYTES = 10 << 20


class ManagementApi:
    def __init__(self, broker: Broker, settings: Settings,
                 listeners: Callable[[], list[Listener]]) -> None:
        self.view = BrokerView(broker, settings, listeners)
        router = Router()
        for module in (node, queues, exchanges, bindings, access, topic_permissions, clients,
                       definitions, policies):
            module.register(router, self.view)
        self.handler = Api(router, self.view.authenticate, self.view.authorize)
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Begin sampling counters for rates (every SAMPLE_S, like RabbitMQ's stats)."""
        self._sample()

    def _sample(self) -> None:
        view = self.view
        view.rates.record([*queues.samples(view), *exchanges.samples(view),
                           *access.samples(view)])
        self._timer = asyncio.get_running_loop().call_later(SAMPLE_S, self._sample)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
