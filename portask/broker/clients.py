"""Connected clients as the broker sees them, for the management API and metrics.

Protocol servers register each connection here and describe it on request with
protocol-neutral views; readers (``http.management``, the metrics collector) never
reach into protocol objects. Nothing here runs per message: a description is built
only when someone asks, and the counters below change on connect, disconnect,
channel open and close.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ConsumerView:
    tag: str
    queue: str
    vhost: str
    ack_required: bool
    exclusive: bool
    prefetch_count: int
    priority: int


@dataclass(frozen=True, slots=True)
class ChannelView:
    number: int
    vhost: str
    prefetch_count: int
    global_prefetch_count: int
    messages_unacknowledged: int
    confirm: bool
    transactional: bool
    publisher: bool  # has published since it opened
    consumers: list[ConsumerView] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ConnectionView:
    name: str
    protocol: str
    peer_host: str
    peer_port: int
    host: str
    port: int
    user: str
    vhost: str
    connected_at_ms: int
    state: str
    channel_max: int
    frame_max: int
    heartbeat_s: int
    client_properties: dict[str, Any]
    channels: list[ChannelView] = field(default_factory=list)


class ClientConnection(Protocol):
    def describe(self) -> ConnectionView:
        """A snapshot of the connection, its channels and their consumers."""


class Clients:
    """The open client connections, and lifetime counters for metrics."""

    def __init__(self) -> None:
        self._open: dict[int, ClientConnection] = {}
        self.connections_opened = 0
        self.connections_closed = 0
        self.channels_opened = 0
        self.channels_closed = 0

    def opened(self, conn: ClientConnection) -> None:
        self._open[id(conn)] = conn
        self.connections_opened += 1

    def closed(self, conn: ClientConnection) -> None:
        if self._open.pop(id(conn), None) is not None:
            self.connections_closed += 1

    def __len__(self) -> int:
        return len(self._open)

    def views(self) -> Iterator[ConnectionView]:
        for conn in list(self._open.values()):
            yield conn.describe()
