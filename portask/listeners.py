"""TCP listeners, bound before anything else starts.

Binding first means a port conflict is reported before storage is opened, and the
kernel completes client handshakes from the moment ``listen()`` returns, so the
ports accept connections while the rest of the broker is still loading.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from portask.config import NetworkSettings, Settings
from portask.kafka_listeners import KafkaListenerSpec, parse

if TYPE_CHECKING:
    # asyncio and ssl are imported lazily: binding happens before the event loop exists,
    # and start-up time counts until the sockets listen.
    import asyncio
    import ssl

    from portask.tls import TlsServer

# Listener name -> (the protocol it speaks, the setting that names its port).
_PORT_SETTINGS = {
    "kafka": "kafka.port", "amqp": "amqp.port", "http": "http.port",
    "management": "http.management_port", "kafka_tls": "kafka.tls_port",
    "amqp_tls": "amqp.tls_port", "http_tls": "http.tls_port",
    "management_tls": "http.management_tls_port",
}


class ListenerError(RuntimeError):
    """A listener could not be bound; the message says which, where, and what to change."""


@dataclass
class Listener:
    name: str
    sock: socket.socket
    state: str = "bound"
    server: asyncio.AbstractServer | None = None
    # Set on TLS listeners: connections are handed to the protocol after the handshake.
    tls: ssl.SSLContext | None = None
    tls_handshake_timeout_s: float = 10.0
    tls_server: TlsServer | None = None
    # Set on Kafka listeners: Kafka's name for it, its security protocol, what it advertises.
    kafka: KafkaListenerSpec | None = None

    @property
    def protocol(self) -> str:
        """The protocol this listener speaks (kafka, amqp, http, management)."""
        return "kafka" if self.kafka is not None else self.name.removesuffix("_tls")

    @property
    def host(self) -> str:
        return str(self.sock.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def address(self) -> str:
        host = self.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    async def serve(self, protocol_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        import asyncio

        if self.tls is not None:
            from portask.tls import TlsServer

            label = "http" if self.protocol == "management" else self.protocol
            self.tls_server = TlsServer(self.sock, label, self.tls,
                                        self.tls_handshake_timeout_s, protocol_factory)
            self.tls_server.start()
            self.state = "listening"
            return
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(protocol_factory, sock=self.sock)
        self.state = "listening"

    async def close(self) -> None:
        self.state = "closed"
        if self.tls_server is not None:
            await self.tls_server.close()
        elif self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        else:
            self.sock.close()


def bind(name: str, host: str, port: int, network: NetworkSettings,
         setting: str | None = None) -> Listener:
    dotted = setting or _PORT_SETTINGS.get(name, f"{name}.port")
    setting = f"{dotted} / PORTASK_{dotted.replace('.', '_').upper()}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenerError(
            f"{name} listener: cannot resolve host {host!r}: {exc.strerror} "
            "(set server.host / --host to an address of this machine)"
        ) from None
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit buffer sizes from the listening socket on Linux.
        if network.send_buffer_bytes:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, int(network.send_buffer_bytes))
        if network.receive_buffer_bytes:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, int(network.receive_buffer_bytes)
            )
        sock.bind(sockaddr)
        sock.listen(network.backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            why = "address already in use"
        elif exc.errno == errno.EACCES:
            why = "permission denied (ports below 1024 need privileges)"
        else:
            why = exc.strerror or str(exc)
        raise ListenerError(
            f"{name} listener cannot bind {host}:{port}: {why}; choose another with {setting}"
        ) from None
    return Listener(name=name, sock=sock)


class _Refused:
    """A connection accepted while its listener refuses (the control API): reset at
    once, so the client sees a broker that is down (librdkafka's mock cluster does the
    same for a broker set down)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False


def refusable(protocol_factory: Callable[[], asyncio.BaseProtocol],
              refusing: Callable[[], bool]) -> Callable[[], asyncio.BaseProtocol]:
    """``protocol_factory``, except while ``refusing()``: one call per accepted
    connection, none per request."""

    def factory() -> asyncio.BaseProtocol:
        if refusing():
            return _Refused()  # type: ignore[return-value]
        return protocol_factory()

    return factory


def configure_accepted(transport: asyncio.BaseTransport, network: NetworkSettings) -> None:
    """Per-connection socket options that are not inherited from the listener."""
    if not network.tcp_nodelay:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)


def bind_all(settings: Settings, tls: ssl.SSLContext | None = None) -> list[Listener]:
    """Bind every enabled listener, or none: on failure the ones bound are closed.

    With a TLS context, each protocol also gets its TLS listener on its own port (as
    RabbitMQ serves 5672 and 5671), unless that port is set to null; with ``tls.only``
    the plain listeners are not bound at all.
    """
    management = settings.http.enabled and settings.http.management_port != 0
    wanted: list[tuple[str, bool, int | None]] = [
        ("amqp", settings.amqp.enabled, settings.amqp.port),
        ("http", settings.http.enabled, settings.http.port),
        # Port 0 turns the management API off (here 0 cannot mean "any free port").
        ("management", management, settings.http.management_port),
    ]
    if tls is not None and settings.tls.only:
        wanted = []
    if tls is not None:
        wanted += [
            ("amqp_tls", settings.amqp.enabled, settings.amqp.tls_port),
            ("http_tls", settings.http.enabled, settings.http.tls_port),
            ("management_tls", management, settings.http.management_tls_port),
        ]
    bound: list[Listener] = []
    try:
        for name, spec in kafka_listener_specs(settings, tls is not None):
            setting = "kafka.listeners" if settings.kafka.listeners else None
            listener = bind(name, spec.host, spec.port, settings.network, setting)
            listener.kafka = spec
            if spec.tls:
                listener.tls = tls
                listener.tls_handshake_timeout_s = settings.tls.handshake_timeout_ms / 1000
            bound.append(listener)
        for name, enabled, port in wanted:
            if enabled and port is not None:
                listener = bind(name, settings.server.host, port, settings.network)
                if name.endswith("_tls"):
                    listener.tls = tls
                    listener.tls_handshake_timeout_s = settings.tls.handshake_timeout_ms / 1000
                bound.append(listener)
    except ListenerError:
        for listener in bound:
            listener.sock.close()
        raise
    return bound


def kafka_listener_specs(settings: Settings,
                         tls: bool) -> list[tuple[str, KafkaListenerSpec]]:
    """(listener name, spec) of each Kafka listener to bind: the named ones of
    kafka.listeners, else kafka.port's (and kafka.tls_port's, with TLS on)."""
    k = settings.kafka
    if not k.enabled:
        return []
    host = settings.server.host
    named = parse(k.listeners, k.advertised_listeners, k.listener_security_protocol_map, host)
    if named:
        return [(spec.listener_name, spec) for spec in named]
    # kafka.sasl_required makes them SASL listeners in Kafka's terms.
    plain, secure = ("SASL_PLAINTEXT", "SASL_SSL") if k.sasl_required else ("PLAINTEXT", "SSL")
    out = [("kafka", KafkaListenerSpec(plain, host, k.port, plain, k.advertised_host,
                                       k.advertised_port))]
    if tls and k.tls_port is not None:
        out.append(("kafka_tls", KafkaListenerSpec(secure, host, k.tls_port, secure,
                                                   k.advertised_host, k.advertised_tls_port)))
    if tls and settings.tls.only:
        out = [(name, spec) for name, spec in out if spec.tls]
    return out
