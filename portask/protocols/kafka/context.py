"""What a Kafka API handler is given: the request's context and what it may use around it.

Handlers see the listener and their connection through the two protocols below rather
than through the classes in server.py. This module imports no API module and no
server code, so the server, the registry and the API modules all depend on it and on
nothing of each other: there is no import cycle among them (tests/test_architecture.py
checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from portask.broker.core import Broker
    from portask.broker.kafka.acls import Acls, Authorizer
    from portask.broker.users import Users
    from portask.config import Settings
    from portask.protocols.scram import ScramServer

# Portask is a one-node cluster: node 0 leads every partition, and as no partition
# ever changed leader, every leader epoch is 0.
NODE_ID = 0
LEADER_EPOCH = 0


class Server(Protocol):
    """The listener's state shared by every connection (server.KafkaServer)."""

    broker: Broker
    settings: Settings
    users: Users  # the SASL user store
    sasl_mechanisms: tuple[str, ...]  # offered by SaslHandshake, in preference order
    acls: Acls  # Kafka's ACLs (durable)
    authorizer: Authorizer | None  # None unless kafka.authorizer: nothing is checked

    def listener_addresses(self, local: tuple[str, int] | None
                           ) -> list[tuple[str, str, str, int, str, int]]:
        """(name, security protocol, bound host, bound port, advertised host, advertised
        port) of every Kafka listener, as a client connected to ``local`` is told."""
        ...


class Connection(Protocol):
    """One client connection (server.KafkaConnection): its peer and its SASL state."""

    peer: Any  # the transport's peername
    local: tuple[str, int] | None  # the address the client connected to
    sasl_mechanism: str | None  # chosen by SaslHandshake
    scram: ScramServer | None  # a SCRAM exchange in progress
    authenticated_user: str | None
    # Set by SaslHandshake v0: the frames that follow are raw SASL tokens, not requests;
    # it answers each with the token to send back, or None to close the connection.
    raw_sasl: Callable[[bytes], bytes | None] | None
    principal: str  # User:<SASL user>, the certificate's mapped name, or User:ANONYMOUS
    host: str  # the client's address, as ACLs name hosts

    def advertised_address(self) -> tuple[str, int]:
        """Where this client is told to connect: its listener's advertised address."""
        ...

    def close_after_reply(self) -> None:
        """Close once the replies queued so far are written (a failed login)."""
        ...

    def close(self) -> None:
        """Close now, answering nothing more (a fault rule of the control API)."""
        ...


@dataclass(slots=True)
class RequestContext:
    server: Server
    connection: Connection
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None

    @property
    def broker(self) -> Broker:
        return self.server.broker
