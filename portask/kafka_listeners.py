"""Kafka's listeners, advertised listeners and security protocol map, parsed.

Kafka names each listener (``listeners=INTERNAL://0.0.0.0:9092,HOST://0.0.0.0:29092``),
tells the clients of each one an address of its own (``advertised.listeners=
INTERNAL://portask:9092,HOST://localhost:29092``) and maps each name to a security
protocol (``listener.security.protocol.map=INTERNAL:PLAINTEXT,HOST:PLAINTEXT``). That is
how a container network and the host both reach one broker: a client bootstraps on
either address and Metadata sends it back to the same listener under the name it can
resolve. The same three settings exist here as ``kafka.listeners``,
``kafka.advertised_listeners`` and ``kafka.listener_security_protocol_map``.

This module only parses: it takes the settings' strings and imports nothing of
Portask, so the config module can validate with it and the listener module bind from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
# Kafka's listener names: letters, digits, underscore (ListenerName is upper-cased).
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_ENDPOINT = re.compile(r"^(?P<name>[^:/]*)://(?P<host>\[[^\]]*\]|[^:\[\]]*):(?P<port>[^:]*)$")


class KafkaListenerError(ValueError):
    """A listener setting is refused; the message names the key and the value."""


@dataclass(frozen=True)
class KafkaListenerSpec:
    """One Kafka listener: where it binds and what it tells its clients."""

    name: str  # Kafka's listener name, upper case (PLAINTEXT, INTERNAL, ...)
    host: str  # the address to bind
    port: int  # 0 = any free port
    security_protocol: str
    advertised_host: str | None = None  # None: the listener's own (or the client's) host
    advertised_port: int | None = None  # None: the port the listener bound

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def listener_name(self) -> str:
        """The name it listens under in Portask's logs and /health: kafka_<name>."""
        return f"kafka_{self.name.lower()}"


def _endpoints(key: str, text: str, *, min_port: int) -> list[tuple[str, str, int]]:
    """NAME://HOST:PORT, comma-separated -> (NAME, HOST, PORT); names unique."""
    out: list[tuple[str, str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        m = _ENDPOINT.match(item)
        if m is None:
            raise KafkaListenerError(
                f"{key}: {item!r} in {text!r} is not NAME://HOST:PORT "
                "(e.g. INTERNAL://0.0.0.0:9092; an IPv6 host in brackets)")
        name, host, port_text = m.group("name"), m.group("host"), m.group("port")
        if not _NAME.match(name):
            raise KafkaListenerError(
                f"{key}: listener name {name!r} in {item!r} must start with a letter and "
                "hold only letters, digits and _")
        if not port_text.isdigit() or not min_port <= int(port_text) <= 65535:
            raise KafkaListenerError(
                f"{key}: port {port_text!r} in {item!r} must be an integer between "
                f"{min_port} and 65535")
        name = name.upper()
        if any(name == seen for seen, _, _ in out):
            raise KafkaListenerError(f"{key}: listener name {name!r} appears twice in {text!r}")
        out.append((name, host.removeprefix("[").removesuffix("]"), int(port_text)))
    return out


def _protocol_map(key: str, text: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, protocol = item.partition(":")
        name, protocol = name.strip().upper(), protocol.strip().upper()
        if not sep or not _NAME.match(name):
            raise KafkaListenerError(f"{key}: {item!r} in {text!r} is not NAME:PROTOCOL "
                                     "(e.g. INTERNAL:PLAINTEXT)")
        if protocol not in SECURITY_PROTOCOLS:
            raise KafkaListenerError(
                f"{key}: {item!r} in {text!r} names security protocol {protocol!r}; "
                f"expected one of {', '.join(SECURITY_PROTOCOLS)}")
        mapping[name] = protocol
    return mapping


def parse(listeners: str, advertised: str, protocol_map: str,
          default_host: str) -> list[KafkaListenerSpec]:
    """The listeners ``kafka.listeners`` names (empty: none), checked against the other
    two settings. An empty HOST binds ``default_host`` (server.host)."""
    bound = _endpoints("kafka.listeners", listeners, min_port=0)
    told = {name: (host, port) for name, host, port in
            _endpoints("kafka.advertised_listeners", advertised, min_port=1)}
    protocols = _protocol_map("kafka.listener_security_protocol_map", protocol_map)
    names = [name for name, _, _ in bound]
    if not bound:
        if told or protocols:
            key = "kafka.advertised_listeners" if told else "kafka.listener_security_protocol_map"
            value = advertised if told else protocol_map
            raise KafkaListenerError(
                f"{key}: {value!r} needs kafka.listeners, which is empty (name the listeners "
                "there, e.g. PLAINTEXT://0.0.0.0:9092)")
        return []
    for name in told:
        if name not in names:
            raise KafkaListenerError(
                f"kafka.advertised_listeners: {advertised!r} names listener {name!r}, which "
                f"kafka.listeners ({listeners!r}) does not")
    for name in protocols:
        if name not in names:
            raise KafkaListenerError(
                f"kafka.listener_security_protocol_map: {protocol_map!r} maps listener "
                f"{name!r}, which kafka.listeners ({listeners!r}) does not name")
    ports = [port for _, _, port in bound if port != 0]
    if len(ports) != len(set(ports)):
        raise KafkaListenerError(
            f"kafka.listeners: {listeners!r} uses a port twice; each listener needs its own")
    specs = []
    for name, host, port in bound:
        protocol = protocols.get(name, name if name in SECURITY_PROTOCOLS else "")
        if not protocol:
            raise KafkaListenerError(
                f"kafka.listener_security_protocol_map: {protocol_map!r} has no entry for "
                f"listener {name!r} of kafka.listeners; add {name}:PLAINTEXT (or SSL, "
                "SASL_PLAINTEXT, SASL_SSL)")
        adv_host, adv_port = told.get(name, (None, None))
        if adv_host is not None and adv_host in WILDCARD_HOSTS:
            raise KafkaListenerError(
                f"kafka.advertised_listeners: {advertised!r} tells clients of {name!r} to "
                f"connect to {adv_host or 'an empty host'!r}, which no client can reach; "
                "name a host clients resolve")
        specs.append(KafkaListenerSpec(name, host or default_host, port, protocol,
                                       adv_host, adv_port))
    return specs


def render(specs: list[tuple[str, str, str, int]]) -> str:
    """(name, protocol, host, port) per listener -> Kafka's ``NAME://HOST:PORT,...``."""
    def hostport(host: str, port: int) -> str:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    return ",".join(f"{name}://{hostport(host, port)}" for name, _, host, port in specs)
