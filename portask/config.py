# Over 500 lines: every setting with its default, type, range and help is declared here, once.
"""Typed settings, the one place where defaults live.

Layers, lowest first: the defaults below < a YAML file (``--config``) < ``PORTASK_*``
environment variables (``PORTASK_<SECTION>_<KEY>``, e.g. ``PORTASK_KAFKA_PORT=19092``)
< command-line flags. Every key a file or flag names must exist and every value must fit
its type and range; anything else is refused with a message naming the key, the value,
where it came from and what is allowed. ``configs/portask.yaml`` documents every key.

The environment is shared with everything else in a container, so a ``PORTASK_*``
variable that names no setting (Kubernetes injects ``PORTASK_PORT``,
``PORTASK_SERVICE_HOST``, ... for a Service named ``portask``; wrappers export their own)
is ignored with one warning line (``environment_warnings``); only a real key with a bad
value stops the broker.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting was refused; the message names key, value, source and what is allowed."""


# Marker types for values that accept human units in YAML, env and flags.
class ByteSize(int):
    """A size in bytes; accepts 1048576, "1MiB", "64KiB", "1GB"."""


class Millis(int):
    """A duration in milliseconds; accepts 1000, "1s", "5m", "7d", "250ms"."""


def _opt(default: Any, help: str, **constraints: Any) -> Any:
    return field(default=default, metadata={"help": help, **constraints})


@dataclass(frozen=True)
class ServerSettings:
    host: str = _opt("127.0.0.1", "Address every listener binds (0.0.0.0 in Docker).")
    data_dir: Path = _opt(Path("data"), "Where logs and definitions are kept.")
    log_level: str = _opt(
        "info", "Broker log level.", choices=("debug", "info", "warning", "error")
    )
    log_format: str = _opt("text", "Log line format.", choices=("text", "json"))
    use_uvloop: bool = _opt(True, "Run on uvloop when it is installed.")


@dataclass(frozen=True)
class NetworkSettings:
    tcp_nodelay: bool = _opt(True, "Disable Nagle's algorithm on accepted sockets.")
    send_buffer_bytes: ByteSize | None = _opt(
        None, "SO_SNDBUF for accepted sockets (null = OS default).", min=1024
    )
    receive_buffer_bytes: ByteSize | None = _opt(
        None, "SO_RCVBUF for accepted sockets (null = OS default).", min=1024
    )
    backlog: int = _opt(1024, "Listen backlog of each listener.", min=1)
    write_buffer_high_bytes: ByteSize = _opt(
        ByteSize(1 << 20),
        "Per-connection bound on what the broker holds for a client that does not read: "
        "past this much queued to send, the connection stops reading requests, Kafka "
        "requests already read wait unanswered and AMQP deliveries to its consumers stop "
        "(messages stay in their queues) until it drains.",
        min=4096,
    )


@dataclass(frozen=True)
class KafkaSettings:
    enabled: bool = _opt(True, "Start the Kafka listener.")
    port: int = _opt(9092, "Kafka listener port (0 = any free port).", min=0, max=65535)
    advertised_host: str | None = _opt(
        None, "Host clients are told to connect to (null = the listener's host)."
    )
    advertised_port: int | None = _opt(
        None, "Port clients are told to connect to (null = the listener's port).",
        min=1, max=65535,
    )
    listeners: str = _opt(
        "",
        "Named Kafka listeners, as Kafka's listeners: NAME://HOST:PORT, comma-separated "
        "(e.g. INTERNAL://0.0.0.0:9092,HOST://0.0.0.0:29092; empty HOST = server.host, "
        "port 0 = any free port). Set, they replace the listeners of kafka.port and "
        "kafka.tls_port and the kafka.advertised_* keys; '' = those.",
    )
    advertised_listeners: str = _opt(
        "",
        "Where the clients of each named listener are told to connect, as Kafka's "
        "advertised.listeners: NAME://HOST:PORT, comma-separated (e.g. "
        "INTERNAL://portask:9092,HOST://localhost:29092); a listener not named here "
        "advertises its own address (the one the client connected to, when it binds "
        "0.0.0.0).",
    )
    listener_security_protocol_map: str = _opt(
        "",
        "Security protocol of each named listener, as Kafka's "
        "listener.security.protocol.map: NAME:PROTOCOL, comma-separated, PROTOCOL one of "
        "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL (SSL ones need tls.cert_file or "
        "tls.dev; SASL ones require a login). A listener named after a protocol needs "
        "no entry.",
    )
    topics_file: Path | None = _opt(
        None,
        "YAML file of topics (partitions, configs) and ACLs created at start-up, as "
        "`portask ctl export-kafka` writes it (what `portask serve --topics FILE` sets); "
        "topics that exist get the file's configs and partitions.",
    )
    num_partitions: int = _opt(1, "Partitions of an auto-created topic.", min=1, max=10000)
    auto_create_topics: bool = _opt(True, "Create a topic when a client first names it.")
    max_message_bytes: ByteSize = _opt(
        ByteSize(1048588), "Largest record batch a topic accepts by default.", min=1
    )
    max_uncompressed_batch_bytes: ByteSize = _opt(
        ByteSize(64 << 20),
        "Largest size a compressed record batch may decompress to; a produce past it gets "
        "MESSAGE_TOO_LARGE. Bounds the memory and time a batch can cost the broker, since "
        "a few KiB of zstd or gzip can expand to gigabytes.",
        min=1 << 20,
    )
    clamp_replication_factor: bool = _opt(
        False, "Accept replication factors > 1 as 1 instead of refusing them."
    )
    socket_request_max_bytes: ByteSize = _opt(
        ByteSize(100 << 20),
        "Largest request frame accepted (socket.request.max.bytes); the read buffer grows "
        "with the bytes that arrive, not with the size a request announces.",
        min=1024,
    )
    connections_max_idle_ms: Millis = _opt(
        Millis(600_000),
        "Close a connection on which nothing was read or written for this long, with no "
        "request being answered (connections.max.idle.ms).",
        min=100,
    )
    incomplete_request_timeout_ms: Millis = _opt(
        Millis(30_000),
        "Close a connection that sent part of a request and then nothing more for this "
        "long (clients time requests out after request.timeout.ms, 30 s by default).",
        min=100,
    )
    max_in_flight_requests: int = _opt(
        100,
        "Requests of one connection read and not yet answered (long-polling fetches and "
        "the answers queued behind them, in order); past this, further requests wait "
        "unread until answers go out.",
        min=1,
    )
    group_initial_rebalance_delay_ms: Millis = _opt(
        Millis(0),
        "How long the first rebalance of an empty consumer group waits for more members "
        "(Kafka's group.initial.rebalance.delay.ms; Kafka's default is 3s).",
        min=0, max=300_000,
    )
    group_min_session_timeout_ms: Millis = _opt(
        Millis(6000),
        "Shortest session timeout a group member may ask for (group.min.session.timeout.ms).",
        min=1,
    )
    group_max_session_timeout_ms: Millis = _opt(
        Millis(1_800_000),
        "Longest session timeout a group member may ask for (group.max.session.timeout.ms).",
        min=1,
    )
    group_consumer_session_timeout_ms: Millis = _opt(
        Millis(45_000),
        "How long a member of a consumer-protocol group (KIP-848) may go without a "
        "heartbeat before it is removed (group.consumer.session.timeout.ms).",
        min=1,
    )
    group_consumer_heartbeat_interval_ms: Millis = _opt(
        Millis(5000),
        "How often members of a consumer-protocol group heartbeat, as the coordinator "
        "tells them (group.consumer.heartbeat.interval.ms); an assignment change waits "
        "for a member's next heartbeat.",
        min=1,
    )
    offset_metadata_max_bytes: ByteSize = _opt(
        ByteSize(4096),
        "Largest metadata string an offset commit may carry (offset.metadata.max.bytes).",
        min=0,
    )
    sasl_mechanisms: str = _opt(
        "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "SASL mechanisms offered, comma-separated, among PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.",
        pattern=r"^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)(,(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512))*$",
    )
    sasl_required: bool = _opt(
        False, "Require SASL authentication (users from auth.users) before any other request; "
        "on the TLS listener a verified client certificate counts as authentication."
    )
    authorizer: bool = _opt(
        False,
        "Enforce Kafka ACLs (CreateAcls/DescribeAcls/DeleteAcls; kept in the definitions "
        "store) on every API Kafka authorizes; off, every client may do anything and the "
        "ACL APIs answer SECURITY_DISABLED, as a Kafka broker without an authorizer does.",
    )
    super_users: str = _opt(
        "",
        "Principals the authorizer always allows, semicolon-separated as Kafka's "
        "super.users (e.g. User:admin;User:CN=ops,O=acme).",
        pattern=r"^([^;:]+:[^;]+(;[^;:]+:[^;]+)*)?$",
    )
    allow_everyone_if_no_acl_found: bool = _opt(
        False,
        "Kafka's allow.everyone.if.no.acl.found: a resource with no ACL at all is open to "
        "everyone instead of to super users only.",
    )
    tls_port: int | None = _opt(
        9093,
        "Port of the Kafka TLS listener (security.protocol SSL, or SASL_SSL), started when "
        "TLS is on (tls.cert_file or tls.dev); null = no Kafka TLS listener, 0 = any free port.",
        min=0, max=65535,
    )
    advertised_tls_port: int | None = _opt(
        None, "Port clients of the TLS listener are told to connect to (null = its port).",
        min=1, max=65535,
    )
    ssl_principal_mapping_rules: str = _opt(
        "DEFAULT",
        "Kafka's ssl.principal.mapping.rules: how a client certificate's subject "
        "(RFC 2253, e.g. CN=app,OU=dev,O=acme) becomes the principal User:<name>; "
        "comma-separated RULE:pattern/replacement/[LU] or DEFAULT (the whole subject), the "
        "first rule whose pattern matches the whole subject wins.",
    )


@dataclass(frozen=True)
class AmqpSettings:
    enabled: bool = _opt(True, "Start the AMQP 0-9-1 listener.")
    port: int = _opt(5672, "AMQP listener port (0 = any free port).", min=0, max=65535)
    frame_max: ByteSize = _opt(
        ByteSize(131072),
        "Largest frame offered in Connection.Tune; bodies are split to fit it.",
        min=4096, max=1 << 24,
    )
    channel_max: int = _opt(
        2047, "Highest channel number offered in Connection.Tune.", min=1, max=65535
    )
    heartbeat_s: int = _opt(
        60, "Heartbeat interval offered in Connection.Tune, in seconds (0 = off).",
        min=0, max=65535,
    )
    incomplete_frame_timeout_ms: Millis = _opt(
        Millis(30_000),
        "Close a connection that sent part of a frame (or of a message's content) and then "
        "nothing more for this long, whatever the heartbeat.",
        min=100,
    )
    tls_port: int | None = _opt(
        5671,
        "Port of the AMQPS listener (AMQP over TLS), started when TLS is on (tls.cert_file "
        "or tls.dev); null = no AMQPS listener, 0 = any free port.",
        min=0, max=65535,
    )
    default_user: str = _opt("guest", "User accepted by PLAIN and AMQPLAIN authentication.")
    default_password: str = _opt("guest", "Password of default_user.")
    vhosts: str = _opt("/", "Comma-separated virtual hosts that exist at start-up.")
    load_definitions: str = _opt(
        "",
        "RabbitMQ definitions JSON file (as rabbitmqctl export_definitions writes it) "
        "imported at every start-up, like RabbitMQ's load_definitions: users, vhosts, "
        "permissions, policies, exchanges, queues and bindings; objects that exist are "
        "kept ('' = none; `portask serve --definitions FILE`).",
    )
    max_message_bytes: ByteSize = _opt(
        ByteSize(128 << 20), "Largest message body a publish may carry.", min=1
    )
    kafka_topics_vhost: str = _opt(
        "/",
        "Virtual host in which every Kafka topic partition is also a stream queue (partition "
        "0 under the topic's name, partition N as <topic>.pN), read and written over AMQP "
        "('' = none). Used when both the Kafka and AMQP listeners are enabled.",
    )
    queue_segment_bytes: ByteSize = _opt(
        ByteSize(16 << 20),
        "Segment size of a durable queue's message log; a segment is deleted once every "
        "message in it is settled, so smaller segments free disk sooner.",
        min=65536,
    )
    memory_high_watermark_bytes: ByteSize = _opt(
        ByteSize(1 << 30),
        "Memory alarm: when the message content (properties + body) held in memory by "
        "non-durable and exclusive queues, ready and unacked, exceeds this, connections "
        "that publish are blocked (Connection.Blocked) until it falls back; messages in "
        "durable queues' logs do not count (0 = no memory alarm).",
        min=0,
    )
    disk_free_limit_bytes: ByteSize = _opt(
        ByteSize(50_000_000),
        "Disk alarm: when free space on the data directory's filesystem is below this "
        "(checked every second), connections that publish are blocked (0 = no disk alarm).",
        min=0,
    )


@dataclass(frozen=True)
class HttpSettings:
    enabled: bool = _opt(True, "Start the HTTP listeners (/health and /metrics; management API).")
    port: int = _opt(8080, "HTTP listener port: /health, /metrics, the web console, /api and "
                     "/kafka/v1 (0 = any free port).", min=0, max=65535)
    management_port: int = _opt(
        15672,
        "Port of RabbitMQ's management HTTP API (rabbitmqadmin, Flower; 0 = off).",
        min=0, max=65535,
    )
    tls_port: int | None = _opt(
        8443,
        "Port of the HTTPS listener (/health, /metrics), started when TLS is on; null = "
        "none, 0 = any free port.",
        min=0, max=65535,
    )
    management_tls_port: int | None = _opt(
        15671,
        "Port of the management API over HTTPS (RabbitMQ's 15671), started when TLS is on "
        "and http.management_port is not 0; null = none, 0 = any free port.",
        min=0, max=65535,
    )
    control_request_log_size: int = _opt(
        1000, "Requests the control API's request log keeps (/_portask/requests; the log "
        "is off until a test turns it on).", min=1, max=100000,
    )


@dataclass(frozen=True)
class StorageSettings:
    segment_bytes: ByteSize = _opt(
        ByteSize(128 << 20), "A segment rolls when it reaches this size.", min=4096
    )
    segment_ms: Millis | None = _opt(
        Millis(7 * 86_400_000), "A segment rolls when it is this old (null = never).", min=1
    )
    index_interval_bytes: ByteSize = _opt(
        ByteSize(4096), "Bytes between two sparse index entries.", min=64
    )
    index_max_bytes: ByteSize = _opt(
        ByteSize(10 << 20), "Size of each segment's index file.", min=4096
    )
    retention_ms: Millis | None = _opt(
        Millis(7 * 86_400_000), "Delete segments older than this (null = keep).", min=1
    )
    retention_bytes: ByteSize | None = _opt(
        None, "Delete oldest segments past this size per log (null = no limit).", min=1
    )
    retention_check_ms: Millis = _opt(
        Millis(300_000), "How often retention runs.", min=100
    )
    flush_messages: int | None = _opt(
        None, "fsync after this many unflushed records (null = off).", min=1
    )
    flush_ms: Millis | None = _opt(
        Millis(1000), "fsync logs with unflushed records this often (null = off).", min=1
    )
    fsync: str = _opt(
        "policy",
        "'always' fsyncs every append before it is acknowledged; 'policy' follows "
        "flush_messages/flush_ms.",
        choices=("always", "policy"),
    )
    preallocate: bool = _opt(True, "Pre-allocate segment files to segment_bytes.")


@dataclass(frozen=True)
class AuthSettings:
    users: str = _opt(
        "guest:guest",
        "Users for Kafka SASL, comma-separated USER:PASSWORD pairs (no commas in passwords).",
        pattern=r"^[^:,]+:[^,]*(,[^:,]+:[^,]*)*$",
    )


@dataclass(frozen=True)
class TlsSettings:
    dev: bool = _opt(
        False,
        "Create (once) a self-signed CA, a server certificate and a client certificate in "
        "<data_dir>/tls and serve TLS with them (what `portask serve --dev-tls` sets).",
    )
    cert_file: Path | None = _opt(
        None, "PEM server certificate (chain); setting it turns the TLS listeners on."
    )
    key_file: Path | None = _opt(None, "PEM private key of cert_file (unencrypted).")
    ca_file: Path | None = _opt(
        None, "PEM CA certificates that client certificates are verified against."
    )
    client_auth: str = _opt(
        "none",
        "Client certificates (mTLS): 'none' asks for none, 'optional' verifies one when "
        "sent, 'required' refuses a client without a valid one.",
        choices=("none", "optional", "required"),
    )
    min_version: str = _opt(
        "TLSv1.2", "Oldest TLS version accepted.", choices=("TLSv1.2", "TLSv1.3")
    )
    handshake_timeout_ms: Millis = _opt(
        Millis(10_000), "Close a connection whose TLS handshake has not finished by then.",
        min=100,
    )
    only: bool = _opt(
        False,
        "Serve TLS only: no plain Kafka, AMQP, HTTP or management listener, just their TLS "
        "ones (needs tls.cert_file and tls.key_file, or tls.dev).",
    )

    @property
    def enabled(self) -> bool:
        return self.dev or self.cert_file is not None


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)


SECTIONS: dict[str, type] = typing.get_type_hints(Settings)
ENV_PREFIX = "PORTASK_"

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_TIME_UNITS = {"": 1, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_UNIT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_NULLS = {"null", "none", "~", ""}


def _field_types() -> dict[str, dict[str, dataclasses.Field[Any]]]:
    out: dict[str, dict[str, dataclasses.Field[Any]]] = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        # Resolve the postponed annotations once so coercion can look at real types.
        fields = {}
        for f in dataclasses.fields(cls):
            f.type = hints[f.name]
            fields[f.name] = f
        out[section] = fields
    return out


_FIELDS = _field_types()


def _describe(f: dataclasses.Field[Any]) -> str:
    base, optional = _unwrap(f.type)
    md = f.metadata
    if "choices" in md:
        allowed = "one of " + ", ".join(repr(c) for c in md["choices"])
    elif base is bool:
        allowed = "true or false"
    elif base is ByteSize:
        allowed = "a size in bytes such as 1048576 or '1MiB'"
    elif base is Millis:
        allowed = "a duration in ms such as 1000 or '1s', '5m', '7d'"
    elif base is int:
        allowed = "an integer"
    elif "pattern" in md:
        allowed = f"a string matching {md['pattern']}"
    else:
        allowed = "a string"
    if "min" in md and "max" in md:
        allowed += f" between {md['min']} and {md['max']}"
    elif "min" in md:
        allowed += f" of at least {md['min']}"
    if optional:
        allowed += ", or null"
    return allowed


def _unwrap(tp: Any) -> tuple[type, bool]:
    args = getattr(tp, "__args__", None)
    if args and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return tp, False


def _coerce(f: dataclasses.Field[Any], raw: Any, from_text: bool) -> Any:
    base, optional = _unwrap(f.type)
    if raw is None or (from_text and isinstance(raw, str) and raw.strip().lower() in _NULLS):
        if optional:
            return None
        raise ValueError
    if base is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str):
            low = raw.strip().lower()
            if low in ("true", "yes", "on", "1"):
                return True
            if low in ("false", "no", "off", "0"):
                return False
        raise ValueError
    if base in (int, ByteSize, Millis):
        if isinstance(raw, bool):
            raise ValueError
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, str):
            m = _UNIT_RE.match(raw)
            if not m:
                raise ValueError
            units = _SIZE_UNITS if base is ByteSize else _TIME_UNITS if base is Millis else {"": 1}
            unit = m.group(2).lower()
            if unit not in units:
                raise ValueError
            number = float(m.group(1)) * units[unit]
            if number != int(number):
                raise ValueError
            value = int(number)
        else:
            raise ValueError
        md = f.metadata
        if ("min" in md and value < md["min"]) or ("max" in md and value > md["max"]):
            raise ValueError
        return base(value)
    if base is Path:
        if not isinstance(raw, str | Path) or str(raw) == "":
            raise ValueError
        return Path(raw)
    if base is str:
        if not isinstance(raw, str):
            raise ValueError
        if "choices" in f.metadata and raw not in f.metadata["choices"]:
            raise ValueError
        if "pattern" in f.metadata and not re.match(f.metadata["pattern"], raw):
            raise ValueError
        return raw
    raise TypeError(f"unsupported setting type {base!r}")  # a programming error, not input


def _apply(
    current: dict[str, dict[str, Any]],
    section: str,
    key: str,
    raw: Any,
    source: str,
    from_text: bool,
) -> None:
    if section not in _FIELDS:
        raise ConfigError(
            f"{section}: unknown section (from {source}); "
            f"known sections: {', '.join(_FIELDS)}"
        )
    fields = _FIELDS[section]
    if key not in fields:
        raise ConfigError(
            f"{section}.{key}: unknown key (from {source}); "
            f"keys of {section}: {', '.join(fields)}"
        )
    f = fields[key]
    try:
        current[section][key] = _coerce(f, raw, from_text)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{section}.{key}: {raw!r} is not valid (from {source}): expected {_describe(f)}"
        ) from None


def _defaults() -> dict[str, dict[str, Any]]:
    s = Settings()
    return {name: dataclasses.asdict(getattr(s, name)) for name in SECTIONS}


def _build(values: dict[str, dict[str, Any]]) -> Settings:
    return Settings(**{name: SECTIONS[name](**values[name]) for name in SECTIONS})


def parse_yaml(text: str, source: str) -> dict[str, dict[str, Any]]:
    import yaml  # only with a config file: importing it costs ~15 ms of every start

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    for section, body in doc.items():
        if body is not None and not isinstance(body, Mapping):
            raise ConfigError(f"{section}: must be a mapping of keys (from {source})")
    return {str(k): dict(v or {}) for k, v in doc.items()}


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Iterable[tuple[str, Any]] = (),
) -> Settings:
    """Build Settings from every layer. ``overrides`` are ("section.key", value) pairs."""
    values = _defaults()
    if config_file is not None:
        try:
            text = Path(config_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{config_file}: cannot read config file: {exc.strerror}") from None
        for section, body in parse_yaml(text, str(config_file)).items():
            for key, raw in body.items():
                _apply(values, section, str(key), raw, str(config_file), from_text=False)
    env = os.environ if environ is None else environ
    for name, section, key in _setting_variables(env):
        _apply(values, section, key, env[name], f"environment {name}", from_text=True)
    for dotted, raw in overrides:
        section, _, key = dotted.partition(".")
        _apply(values, section, key, raw, f"flag {dotted}", from_text=isinstance(raw, str))
    settings = _build(values)
    _check_combinations(settings)
    return settings


def _check_combinations(settings: Settings) -> None:
    """Rules that span keys; each message names the keys and values involved."""
    tls = settings.tls
    if tls.dev and (tls.cert_file or tls.key_file or tls.ca_file):
        raise ConfigError(
            "tls.dev: true creates its own certificates; it cannot be combined with "
            f"tls.cert_file={_text(tls.cert_file)}, tls.key_file={_text(tls.key_file)}, "
            f"tls.ca_file={_text(tls.ca_file)} (leave those null)"
        )
    if (tls.cert_file is None) != (tls.key_file is None):
        raise ConfigError(
            f"tls.cert_file={_text(tls.cert_file)} and tls.key_file={_text(tls.key_file)}: "
            "set both (a certificate and its private key) or neither"
        )
    if tls.client_auth != "none" and tls.cert_file is not None and tls.ca_file is None:
        raise ConfigError(
            f"tls.client_auth: {tls.client_auth!r} needs tls.ca_file (the CA that signs "
            "client certificates), which is null"
        )
    if tls.client_auth != "none" and not tls.enabled:
        raise ConfigError(
            f"tls.client_auth: {tls.client_auth!r} needs TLS on (tls.cert_file or tls.dev)"
        )
    _check_kafka_listeners(settings)
    if tls.only:
        _check_tls_only(settings)
    from portask.broker.kafka.principals import MappingRuleError, parse_rules

    try:
        parse_rules(settings.kafka.ssl_principal_mapping_rules)
    except MappingRuleError as exc:
        raise ConfigError(
            f"kafka.ssl_principal_mapping_rules: {settings.kafka.ssl_principal_mapping_rules!r}"
            f" is not valid: {exc}"
        ) from None


def _check_kafka_listeners(settings: Settings) -> None:
    from portask.kafka_listeners import KafkaListenerError, parse

    k = settings.kafka
    try:
        specs = parse(k.listeners, k.advertised_listeners, k.listener_security_protocol_map,
                      settings.server.host)
    except KafkaListenerError as exc:
        raise ConfigError(str(exc)) from None
    for spec in specs:
        if spec.tls and not settings.tls.enabled:
            raise ConfigError(
                f"kafka.listener_security_protocol_map: listener {spec.name!r} of "
                f"kafka.listeners ({k.listeners!r}) is {spec.security_protocol}, which needs "
                "TLS on (tls.cert_file or tls.dev)")


def _check_tls_only(settings: Settings) -> None:
    """TLS-only must leave each enabled protocol a listener, or it would silently vanish."""
    if not settings.tls.enabled:
        raise ConfigError(
            "tls.only: true needs TLS on: set tls.cert_file and tls.key_file, or tls.dev "
            "(portask serve --dev-tls); without certificates nothing could listen"
        )
    k = settings.kafka
    if k.enabled and k.listeners:
        from portask.kafka_listeners import parse

        plain = [spec.name for spec in parse(k.listeners, k.advertised_listeners,
                                             k.listener_security_protocol_map,
                                             settings.server.host) if not spec.tls]
        if plain:
            raise ConfigError(
                f"tls.only: true with kafka.listeners: {k.listeners!r}: listener "
                f"{plain[0]!r} is not SSL or SASL_SSL; map it to one in "
                "kafka.listener_security_protocol_map or drop tls.only"
            )
    http = settings.http
    needed = [
        ("kafka.tls_port", k.enabled and not k.listeners, k.tls_port, "kafka.enabled"),
        ("amqp.tls_port", settings.amqp.enabled, settings.amqp.tls_port, "amqp.enabled"),
        ("http.tls_port", http.enabled, http.tls_port, "http.enabled"),
        ("http.management_tls_port", http.enabled and http.management_port != 0,
         http.management_tls_port, "http.management_port: 0"),
    ]
    for key, enabled, port, off in needed:
        if enabled and port is None:
            raise ConfigError(
                f"tls.only: true with {key}: null leaves that protocol no listener; set "
                f"{key} or turn the protocol off ({off})"
            )


def _text(value: Any) -> str:
    return "null" if value is None else repr(str(value))


def _split_variable(name: str) -> tuple[str, str] | None:
    """(section, key) when ``name`` names a setting, else None."""
    if not name.startswith(ENV_PREFIX):
        return None
    section, _, key = name[len(ENV_PREFIX):].lower().partition("_")
    return (section, key) if key in _FIELDS.get(section, {}) else None


def _setting_variables(env: Mapping[str, str]) -> list[tuple[str, str, str]]:
    return [(name, *split) for name in sorted(env) if (split := _split_variable(name))]


def environment_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line naming every ``PORTASK_*`` variable that is not a setting, with a
    did-you-mean for near misses of real keys; empty when there are none."""
    env = os.environ if environ is None else environ
    unknown = sorted(n for n in env if n.startswith(ENV_PREFIX) and not _split_variable(n))
    if not unknown:
        return []
    real = [f"{ENV_PREFIX}{s.upper()}_{k.upper()}" for s, keys in _FIELDS.items() for k in keys]
    hints = [f"{name} -> {close[0]}?" for name in unknown
             if (close := difflib.get_close_matches(name, real, n=1, cutoff=0.85))]
    line = (f"ignoring environment variables that are not Portask settings: "
            f"{', '.join(unknown)} (settings look like PORTASK_<SECTION>_<KEY>)")
    return [line + (f"; did you mean: {'; '.join(hints)}" if hints else "")]


def to_yaml(settings: Settings) -> str:
    """The effective settings as YAML, keys in declaration order."""
    doc = {}
    for name in SECTIONS:
        section = getattr(settings, name)
        doc[name] = {
            f.name: _plain(getattr(section, f.name)) for f in dataclasses.fields(section)
        }
    import yaml

    return yaml.safe_dump(doc, sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    return value


def describe_keys() -> list[tuple[str, Any, str]]:
    """(dotted key, default, help) for every setting: used to check the documented YAML."""
    defaults = Settings()
    out = []
    for section, fields in _FIELDS.items():
        for key, f in fields.items():
            out.append(
                (f"{section}.{key}", _plain(getattr(getattr(defaults, section), key)),
                 f.metadata["help"])
            )
    return out
