"""Seed: load a declared topology in one call (the control API's ``POST /_portask/seed``).

The document (YAML or JSON, already parsed here) is Portask's own format::

    vhosts:
      /:
        exchanges: [{name: orders, type: topic, durable: true}]
        queues:
          - name: billing
            durable: true
            arguments: {x-max-priority: 5}
            messages: [{body: "hello", routing_key: order.placed,
                        properties: {headers: {tenant: acme}, priority: 3}}]
        bindings:
          - {source: orders, destination: billing, destination_type: queue,
             routing_key: "order.*"}
    topics:
      - name: events
        partitions: 3
        configs: {retention.ms: "60000"}
        records: [{key: k1, value: v1, partition: 0, headers: {h: x}}]

``exchanges``, ``queues`` and ``bindings`` at the top level belong to vhost ``/``. What
exists already is declared again as a client would (equivalent: nothing changes; not:
the declare's refusal is the answer); messages and records are added. Everything before
a refusal stays: a seed is not a transaction.

RabbitMQ's definitions JSON (as ``rabbitmqctl export_definitions`` writes it) goes under
``definitions:``, next to ``topics`` and Portask's own ``vhosts``. It is imported first,
by the same importer as ``POST /api/definitions`` (checked whole before any of it is
applied; users, vhosts, permissions, policies, exchanges, queues, bindings), so the
seed's own entries can put messages in its queues. A whole document is taken for a
definitions export when it carries ``rabbit_version`` or ``rabbitmq_version`` (every
export does) or lists its ``vhosts`` (a seed maps them); a ``topics`` key in it is
still Portask's, so an export plus the Kafka topics is one call.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from portask.broker.control import ControlError

if TYPE_CHECKING:
    from portask.broker.amqp.vhosts.vhost import VirtualHost
    from portask.broker.snapshots import BrokerState

SEEDER = object()
_TOP_LEVEL = ("vhosts", "exchanges", "queues", "bindings", "topics", "definitions")
# Keys only a definitions export has: ``export_definitions`` always writes one of them.
_EXPORT_MARKS = ("rabbit_version", "rabbitmq_version")


@dataclass(slots=True)
class SeedResult:
    vhosts: int = 0
    exchanges: int = 0
    queues: int = 0
    bindings: int = 0
    messages: int = 0
    topics: int = 0
    records: int = 0
    # What the ``definitions`` document created, by kind (the importer's counts), and
    # what it left out and why (``amq.*`` names, runtime parameters).
    definitions: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    took_ms: float = 0.0


def seed(broker: BrokerState, document: Any) -> SeedResult:
    if not isinstance(document, dict):
        raise ControlError("a seed is an object with vhosts and topics")
    if _is_definitions_export(document):
        document = {"definitions": {k: v for k, v in document.items() if k != "topics"},
                    **({"topics": document["topics"]} if "topics" in document else {})}
    unknown = set(document) - set(_TOP_LEVEL)
    if unknown:
        raise ControlError(f"unknown seed keys: {', '.join(sorted(map(str, unknown)))}; "
                           f"expected {', '.join(_TOP_LEVEL)}")
    started = time.perf_counter()
    result = SeedResult()
    vhosts = _mapping(document.get("vhosts"), "vhosts")
    if any(k in document for k in ("exchanges", "queues", "bindings")):
        top = {k: document[k] for k in ("exchanges", "queues", "bindings") if k in document}
        vhosts = {**vhosts, "/": {**top, **_mapping(vhosts.get("/"), "vhosts./")}}
    definitions = document.get("definitions")
    with broker.definitions.batch():
        if definitions is not None:
            _import_definitions(broker, definitions, result)
        for spec in _list(document.get("topics"), "topics"):
            _seed_topic(broker, spec, result)
        if vhosts:
            amqp = broker.amqp
            if amqp is None:
                raise ControlError("seeding vhosts needs the AMQP listener")
            for name, spec in vhosts.items():
                vhost = amqp.get(str(name))
                if vhost is None:
                    vhost = amqp.create(str(name))
                _seed_vhost(vhost, _mapping(spec, f"vhosts.{name}"), result)
                result.vhosts += 1
            amqp.commit()
    result.took_ms = round((time.perf_counter() - started) * 1000, 3)
    return result


def _is_definitions_export(document: dict[str, Any]) -> bool:
    return (any(k in document for k in _EXPORT_MARKS)
            or isinstance(document.get("vhosts"), list))


def _import_definitions(broker: BrokerState, document: Any, result: SeedResult) -> None:
    from portask.broker.amqp.definitions_import import InvalidDefinitions, import_definitions

    amqp = broker.amqp
    if amqp is None:
        raise ControlError("seeding definitions needs the AMQP listener")
    try:
        report = import_definitions(document, amqp, broker.users)
    except InvalidDefinitions as exc:
        raise ControlError(f"definitions: {exc}") from None
    amqp.commit()
    result.definitions = report.created
    result.skipped = report.skipped


def _seed_topic(broker: BrokerState, spec: Any, result: SeedResult) -> None:
    spec = _mapping(spec, "topics[]")
    name = _str(spec, "name", required=True)
    partitions = spec.get("partitions", 1)
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise ControlError(f"topic {name!r}: partitions must be an integer")
    configs = {str(k): str(v) for k, v in _mapping(spec.get("configs"), "configs").items()}
    topics = broker.topics
    topic = topics.get(name)
    try:
        if topic is None:
            topic = topics.create(name, partitions, configs)
            result.topics += 1
    except Exception as exc:  # the topic module's refusals: bad name, count, config
        raise ControlError(f"topic {name!r}: {exc}") from None
    records = _list(spec.get("records"), f"topics.{name}.records")
    if not records:
        return
    codec = topics.codec
    if codec is None:
        raise ControlError("seeding records needs the Kafka listener")
    now = int(time.time() * 1000)
    for record in records:
        record = _mapping(record, f"topics.{name}.records[]")
        key = _bytes(record.get("key"))
        index = record.get("partition")
        if index is None:
            index = codec.partition_for(key, len(topic.partitions))
        if isinstance(index, bool) or not isinstance(index, int) or not (
                0 <= index < len(topic.partitions)):
            raise ControlError(f"topic {name!r}: no partition {index!r}")
        headers = [(str(k), _bytes(v)) for k, v in
                   _mapping(record.get("headers"), "headers").items()]
        timestamp = record.get("timestamp_ms", now)
        try:
            codec.append(topic.partitions[index], key, _bytes(record.get("value")), headers,
                         int(timestamp))
        except ValueError as exc:
            raise ControlError(f"topic {name!r}: {exc}") from None
        result.records += 1


def _seed_vhost(vhost: VirtualHost, spec: dict[str, Any], result: SeedResult) -> None:
    from portask.broker.amqp.errors import BrokerError

    try:
        for item in _list(spec.get("exchanges"), "exchanges"):
            item = _mapping(item, "exchanges[]")
            vhost.declare_exchange(
                _str(item, "name", required=True), _str(item, "type") or "direct",
                durable=bool(item.get("durable", True)),
                auto_delete=bool(item.get("auto_delete", False)),
                internal=bool(item.get("internal", False)),
                arguments=_mapping(item.get("arguments"), "arguments"))
            result.exchanges += 1
        for item in _list(spec.get("queues"), "queues"):
            item = _mapping(item, "queues[]")
            durable = bool(item.get("durable", True))
            queue = vhost.declare_queue(
                _str(item, "name", required=True), owner=SEEDER, durable=durable,
                auto_delete=bool(item.get("auto_delete", False)),
                arguments=_mapping(item.get("arguments"), "arguments"))
            result.queues += 1
            messages = [_message(vhost, queue.name, durable, m)
                        for m in _list(item.get("messages"), "messages")]
            queue.load(messages)
            result.messages += len(messages)
        for item in _list(spec.get("bindings"), "bindings"):
            item = _mapping(item, "bindings[]")
            source = _str(item, "source", required=True)
            destination = _str(item, "destination", required=True)
            kind = _str(item, "destination_type") or "queue"
            routing_key = _str(item, "routing_key") or ""
            arguments = _mapping(item.get("arguments"), "arguments")
            if kind == "queue":
                vhost.bind_queue(destination, source, routing_key, arguments, SEEDER)
            elif kind == "exchange":
                vhost.bind_exchange(destination, source, routing_key, arguments)
            else:
                raise ControlError("destination_type is queue or exchange")
            result.bindings += 1
    except BrokerError as exc:
        raise ControlError(f"vhost {vhost.name!r}: {exc.text}") from None


def _message(vhost: VirtualHost, queue: str, durable: bool, spec: Any) -> tuple[Any, int]:
    from portask.broker.amqp.message_store import Message

    spec = _mapping(spec, "messages[]")
    properties = dict(_mapping(spec.get("properties"), "properties"))
    if durable:
        properties.setdefault("delivery_mode", 2)
    codec = vhost.codec
    if codec is None:
        raise ControlError("seeding messages needs the AMQP listener")
    try:
        raw = codec.from_plain(properties)
    except ValueError as exc:
        raise ControlError(f"queue {queue!r}: {exc}") from None
    body = spec.get("body", "")
    if spec.get("body_encoding") == "base64":
        try:
            data = base64.b64decode(str(body), validate=True)
        except (binascii.Error, ValueError):
            raise ControlError(f"queue {queue!r}: body is not base64") from None
    elif isinstance(body, str):
        data = body.encode()
    else:
        raise ControlError(f"queue {queue!r}: body must be a string")
    expiration = properties.get("expiration")
    deadline = 0
    if expiration is not None:
        if not str(expiration).isdigit():
            raise ControlError(f"queue {queue!r}: expiration must be milliseconds")
        deadline = int(time.time() * 1000) + int(expiration)
    message = Message(_str(spec, "exchange") or "", _str(spec, "routing_key") or queue,
                      raw, data, persistent=properties.get("delivery_mode") == 2,
                      priority=int(properties.get("priority") or 0))
    return message, deadline


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ControlError(f"{where} must be an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ControlError(f"{where} must be a list")
    return value


def _str(spec: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = spec.get(name)
    if value is None:
        if required:
            raise ControlError(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise ControlError(f"{name} must be a string")
    return value


def _bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    return str(value).encode()
