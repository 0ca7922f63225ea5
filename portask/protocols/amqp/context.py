"""What every AMQP connection shares, handed down by the composition root (``app.py``).

This module imports nothing else of ``protocols.amqp``: ``server`` builds connections,
a connection builds its channels, and each gets from here what it needs from above it
(settings, the vhosts, the login check, the alarm state, the registries of live
connections) without importing the module that created it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from portask.broker.alarms import DISK, MEMORY
from portask.broker.amqp.vhosts import VirtualHosts
from portask.broker.clients import Clients
from portask.broker.control import Faults, RequestLog
from portask.broker.user_store import FULL, Permission, UserStore
from portask.config import AmqpSettings, NetworkSettings


class LiveConnection(Protocol):
    """What the listener does to a connection after accepting it (AmqpConnection)."""

    alarm: bool
    blocked: bool
    vhost: Any  # the VirtualHost opened, None before Connection.Open

    def unblock(self) -> None: ...

    def close_gracefully(self, reason: str = ...) -> None: ...


@dataclass(eq=False)
class AmqpContext:
    settings: AmqpSettings
    network: NetworkSettings
    # Durable vhosts restore their definitions and queue logs before this is built.
    vhosts: VirtualHosts
    # The broker's view of who is connected (management API, metrics).
    clients: Clients = field(default_factory=Clients)
    # Resource alarms (memory, disk) in effect; a connection that publishes while any is
    # set stops being read (AmqpConnection.block). Kept current by AmqpServer.
    alarms: frozenset[str] = frozenset()
    connections: set[LiveConnection] = field(default_factory=set)
    # The one user store (configured and run-time users, their permissions); None in
    # tests that build a context by hand: then only amqp.default_user logs in.
    users: UserStore | None = None
    # Fault rules of the control API; connections consult them while any AMQP rule is set.
    faults: Faults = field(default_factory=Faults)
    # The control API's request log; methods are recorded while it is on.
    requests: RequestLog = field(default_factory=RequestLog)

    def accepts_login(self, user: str, password: str) -> bool:
        """PLAIN and AMQPLAIN credentials against the user store."""
        if self.users is not None:
            return self.users.check_password(user, password)
        settings = self.settings
        return user == settings.default_user and password == settings.default_password

    def accepts_user(self, user: str) -> bool:
        """EXTERNAL (a verified client certificate): the CN must name a known user, as
        RabbitMQ requires the user to exist; no password is asked."""
        if self.users is not None:
            return self.users.get(user) is not None
        return user == self.settings.default_user

    def permission(self, user: str, vhost: str) -> Permission | None:
        """The user's permissions on a vhost; None: no access to it."""
        return self.users.permission(user, vhost) if self.users is not None else FULL

    @property
    def blocked_reason(self) -> str:
        """RabbitMQ's Connection.Blocked reason: "low on memory", "low on memory & disk"."""
        return "low on " + " & ".join(r for r in (MEMORY, DISK) if r in self.alarms)
