"""Configs: DescribeConfigs (32), AlterConfigs (33), IncrementalAlterConfigs (44).

DescribeConfigs, versions 0-4:
    v0  an is_default flag per entry
    v1  include_synonyms; config sources replace is_default
    v2  same as v1
    v3  include_documentation; config types
    v4  flexible
AlterConfigs, versions 0-2 (replaces a resource's overrides with the set given):
    v1  same as v0
    v2  flexible
IncrementalAlterConfigs, versions 0-1 (sets, deletes, appends to or subtracts from
single keys, KIP-339):
    v1  flexible

Topic values are the ones really in force (overrides over the broker's
settings). Broker values come from the broker's settings file and are read-only at
run time: altering them is refused with a message saying where to change them.

With ``kafka.authorizer``: DESCRIBE_CONFIGS or ALTER_CONFIGS on the topic (else
TOPIC_AUTHORIZATION_FAILED) or, for the broker's configs, on the cluster (else
CLUSTER_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from portask.broker.kafka import topic_configs
from portask.broker.kafka.topic_configs import InvalidTopicConfig
from portask.config import Settings
from portask.kafka_listeners import render
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import (
    Operation,
    ResourceType,
    allowed,
    cluster_allowed,
)
from portask.protocols.kafka.context import NODE_ID, RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE

TOPIC, BROKER = 2, 4
CONFIG_SOURCE_TOPIC, CONFIG_SOURCE_STATIC_BROKER, CONFIG_SOURCE_DEFAULT = 1, 4, 5
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
_TYPE_BOOLEAN, _TYPE_STRING, _TYPE_INT, _TYPE_LONG, _TYPE_LIST, _TYPE_PASSWORD = 1, 2, 3, 5, 7, 9
_TOPIC_TYPES = {
    "cleanup.policy": _TYPE_LIST,
    "compression.type": _TYPE_STRING,
    "message.timestamp.type": _TYPE_STRING,
    "max.message.bytes": _TYPE_INT,
    "segment.bytes": _TYPE_INT,
}


class BrokerConfig(NamedTuple):
    value: str | None  # None for a sensitive value, which Kafka never sends
    kind: int  # DescribeConfigs v3 config type
    is_default: bool
    sensitive: bool = False


def broker_configs(
    settings: Settings, listeners: list[tuple[str, str, str, int, str, int]], log_dir: str
) -> dict[str, BrokerConfig]:
    """Kafka 3.7 broker config names -> their value in this broker, from Portask's settings.

    ``listeners`` are (name, security protocol, host, port, advertised host, advertised
    port) per Kafka listener; ``log_dir`` is where partition logs live. Only names whose
    value Portask really has are listed: each is what a Kafka broker configured like this
    one would report.
    """
    defaults = Settings()
    topic_defaults = topic_configs.defaults(settings)
    default_topic_defaults = topic_configs.defaults(defaults)

    def entry(value: Any, default: Any, kind: int) -> BrokerConfig:
        text = (
            "null"
            if value is None
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        return BrokerConfig(text, kind, value == default)

    def topic_default(name: str, kind: int) -> BrokerConfig:
        return entry(topic_defaults[name], default_topic_defaults[name], kind)

    k, s, n = settings.kafka, settings.storage, settings.network
    dk, ds, dn = defaults.kafka, defaults.storage, defaults.network
    bound = render([(name, p, host, port) for name, p, host, port, _, _ in listeners])
    told = render([(name, p, host, port) for name, p, _, _, host, port in listeners])
    protocol_map = ",".join(f"{name}:{p}" for name, p, *_ in listeners)
    return {
        "broker.id": entry(NODE_ID, NODE_ID, _TYPE_INT),
        "node.id": entry(NODE_ID, NODE_ID, _TYPE_INT),
        # One process is both the broker and the controller of its one-node cluster.
        "process.roles": BrokerConfig("broker,controller", _TYPE_LIST, False),
        "listeners": BrokerConfig(bound, _TYPE_STRING, False),
        "advertised.listeners": BrokerConfig(told, _TYPE_STRING, False),
        "listener.security.protocol.map": BrokerConfig(protocol_map, _TYPE_STRING, False),
        "log.dirs": BrokerConfig(log_dir, _TYPE_STRING, False),
        "num.partitions": entry(k.num_partitions, dk.num_partitions, _TYPE_INT),
        "auto.create.topics.enable": entry(
            k.auto_create_topics, dk.auto_create_topics, _TYPE_BOOLEAN
        ),
        "default.replication.factor": entry(1, 1, _TYPE_INT),
        "min.insync.replicas": entry(1, 1, _TYPE_INT),
        "message.max.bytes": entry(k.max_message_bytes, dk.max_message_bytes, _TYPE_INT),
        "socket.request.max.bytes": entry(
            k.socket_request_max_bytes, dk.socket_request_max_bytes, _TYPE_INT
        ),
        "connections.max.idle.ms": entry(
            k.connections_max_idle_ms, dk.connections_max_idle_ms, _TYPE_LONG
        ),
        "group.min.session.timeout.ms": entry(
            k.group_min_session_timeout_ms, dk.group_min_session_timeout_ms, _TYPE_INT
        ),
        "group.max.session.timeout.ms": entry(
            k.group_max_session_timeout_ms, dk.group_max_session_timeout_ms, _TYPE_INT
        ),
        "group.initial.rebalance.delay.ms": entry(
            k.group_initial_rebalance_delay_ms, dk.group_initial_rebalance_delay_ms, _TYPE_INT
        ),
        "offset.metadata.max.bytes": entry(
            k.offset_metadata_max_bytes, dk.offset_metadata_max_bytes, _TYPE_INT
        ),
        "sasl.enabled.mechanisms": entry(k.sasl_mechanisms, dk.sasl_mechanisms, _TYPE_LIST),
        # The SASL users (auth.users) are this broker's JAAS configuration: a password,
        # so described as Kafka describes one, sensitive and without its value.
        "sasl.jaas.config": BrokerConfig(
            None, _TYPE_PASSWORD, settings.auth.users == defaults.auth.users, sensitive=True
        ),
        "compression.type": topic_default("compression.type", _TYPE_STRING),
        "log.cleanup.policy": topic_default("cleanup.policy", _TYPE_LIST),
        "log.cleaner.delete.retention.ms": topic_default("delete.retention.ms", _TYPE_LONG),
        "log.message.timestamp.type": topic_default("message.timestamp.type", _TYPE_STRING),
        "log.segment.bytes": entry(s.segment_bytes, ds.segment_bytes, _TYPE_INT),
        "log.roll.ms": entry(s.segment_ms, ds.segment_ms, _TYPE_LONG),
        "log.retention.ms": entry(
            -1 if s.retention_ms is None else s.retention_ms,
            -1 if ds.retention_ms is None else ds.retention_ms,
            _TYPE_LONG,
        ),
        "log.retention.bytes": entry(
            -1 if s.retention_bytes is None else s.retention_bytes, -1, _TYPE_LONG
        ),
        "log.retention.check.interval.ms": entry(
            s.retention_check_ms, ds.retention_check_ms, _TYPE_LONG
        ),
        "log.flush.interval.ms": entry(s.flush_ms, ds.flush_ms, _TYPE_LONG),
        "log.flush.interval.messages": entry(s.flush_messages, ds.flush_messages, _TYPE_LONG),
        "log.index.interval.bytes": entry(
            s.index_interval_bytes, ds.index_interval_bytes, _TYPE_INT
        ),
        "log.index.size.max.bytes": entry(s.index_max_bytes, ds.index_max_bytes, _TYPE_INT),
        "log.preallocate": entry(s.preallocate, ds.preallocate, _TYPE_BOOLEAN),
        "socket.send.buffer.bytes": entry(
            n.send_buffer_bytes or -1, dn.send_buffer_bytes or -1, _TYPE_INT
        ),
        "socket.receive.buffer.bytes": entry(
            n.receive_buffer_bytes or -1, dn.receive_buffer_bytes or -1, _TYPE_INT
        ),
    }


@api(ApiKey.DESCRIBE_CONFIGS, (0, 4))
def describe_configs(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.DESCRIBE_CONFIGS, ctx.api_version)
    results = []
    for res in request.resources:
        error, message = ErrorCode.none, None
        entries: list[tuple[str, str | None, bool, int, int, str | None, bool]] = []
        keys = set(res.configuration_keys) if res.configuration_keys is not None else None
        refused = _refusal(ctx, res.resource_type, res.resource_name, Operation.DESCRIBE_CONFIGS)
        if refused is not None:
            error = refused
        elif res.resource_type == TOPIC:
            topic = ctx.broker.topics.get(res.resource_name)
            if topic is None:
                error = ErrorCode.unknown_topic_or_partition
                message = f"topic {res.resource_name!r} does not exist"
            else:
                for name, value in ctx.broker.topics.effective_configs(topic).items():
                    overridden = name in topic.configs
                    entries.append(
                        (
                            name,
                            value,
                            False,
                            CONFIG_SOURCE_TOPIC if overridden else CONFIG_SOURCE_DEFAULT,
                            _TOPIC_TYPES.get(name, _TYPE_LONG),
                            topic_configs.KEYS[name].doc,
                            False,
                        )
                    )
        elif res.resource_type == BROKER and res.resource_name in ("", str(NODE_ID)):
            # Bound ports, not configured ones (which may be 0, "any free port").
            described = broker_configs(
                ctx.server.settings,
                ctx.server.listener_addresses(ctx.connection.local),
                str(ctx.broker.topics.log_dir),
            )
            for name, c in described.items():
                source = CONFIG_SOURCE_DEFAULT if c.is_default else CONFIG_SOURCE_STATIC_BROKER
                entries.append((name, c.value, True, source, c.kind, None, c.sensitive))
        else:
            error = ErrorCode.invalid_request
            message = (
                f"resource type {res.resource_type} named {res.resource_name!r} "
                "is not described by this broker"
            )
        configs = tuple(
            registry.make(
                types.DescribeConfigsResourceResult,
                name=name,
                value=value,
                read_only=read_only,
                config_source=source,
                is_default=source == CONFIG_SOURCE_DEFAULT,
                is_sensitive=sensitive,
                synonyms=(),
                config_type=kind,
                documentation=doc if request_docs(request) else None,
            )
            for name, value, read_only, source, kind, doc, sensitive in entries
            if keys is None or name in keys
        )
        results.append(
            registry.make(
                types.DescribeConfigsResult,
                error_code=error,
                error_message=message,
                resource_type=res.resource_type,
                resource_name=res.resource_name,
                configs=configs,
            )
        )
    return registry.make(
        types.DescribeConfigsResponse, throttle_time=NO_THROTTLE, results=tuple(results)
    )


def _refusal(ctx: RequestContext, resource_type: int, name: str,
             operation: Operation) -> ErrorCode | None:
    """Kafka's check of a config resource: the operation on the topic, or on the cluster
    for a broker's configs."""
    if ctx.server.authorizer is None:
        return None
    if resource_type == TOPIC:
        if allowed(ctx, operation, ResourceType.TOPIC, name):
            return None
        return ErrorCode.topic_authorization_failed
    if resource_type == BROKER and not cluster_allowed(ctx, operation):
        return ErrorCode.cluster_authorization_failed
    return None


def request_docs(request: Any) -> bool:
    return bool(getattr(request, "include_documentation", False))


def _alter(
    ctx: RequestContext,
    resource_type: int,
    name: str,
    validate_only: bool,
    change: Any,
) -> tuple[ErrorCode, str | None]:
    """Apply ``change(current overrides) -> new overrides`` to one resource."""
    refused = _refusal(ctx, resource_type, name, Operation.ALTER_CONFIGS)
    if refused is not None:
        return refused, None
    if resource_type == BROKER:
        return (
            ErrorCode.invalid_request,
            "broker configs are read-only at run time; set them in the config file "
            "(configs/portask.yaml) or with PORTASK_* variables and restart",
        )
    if resource_type != TOPIC:
        return ErrorCode.invalid_request, f"resource type {resource_type} cannot be altered"
    topics = ctx.broker.topics
    topic = topics.get(name)
    if topic is None:
        return ErrorCode.unknown_topic_or_partition, f"topic {name!r} does not exist"
    try:
        updated = topic_configs.validate(change(dict(topic.configs)))
    except InvalidTopicConfig as exc:
        return ErrorCode.invalid_config, str(exc)
    if not validate_only:
        topics.alter_configs(name, updated)
    return ErrorCode.none, None


@api(ApiKey.ALTER_CONFIGS, (0, 2))
def alter_configs(ctx: RequestContext, request: Any) -> Any:
    # AlterConfigs replaces a resource's overrides with the set given.
    return _alter_all(
        ctx,
        request,
        ApiKey.ALTER_CONFIGS,
        "AlterConfigsResponse",
        lambda res: lambda _current: {c.name: c.value for c in res.configs},
    )


def _alter_all(
    ctx: RequestContext, request: Any, key: ApiKey, response: str, change_of: Any
) -> Any:
    """Both alter APIs: one answer per resource, ``change_of(resource)`` says what to do."""
    types = registry.response_types(key, ctx.api_version)
    responses = []
    for res in request.resources:
        error, message = _alter(
            ctx, res.resource_type, res.resource_name, request.validate_only, change_of(res)
        )
        responses.append(
            registry.make(
                types.AlterConfigsResourceResponse,
                error_code=error,
                error_message=message,
                resource_type=res.resource_type,
                resource_name=res.resource_name,
            )
        )
    return registry.make(
        getattr(types, response), throttle_time=NO_THROTTLE, responses=tuple(responses)
    )


def _incremental(ops: Any) -> Any:
    def change(current: dict[str, str | None]) -> dict[str, str | None]:
        for op in ops:
            if op.config_operation == SET:
                current[op.name] = op.value
            elif op.config_operation == DELETE:
                current.pop(op.name, None)
            elif op.config_operation in (APPEND, SUBTRACT):
                if _TOPIC_TYPES.get(op.name) != _TYPE_LIST:
                    raise InvalidTopicConfig(
                        f"{op.name}: APPEND and SUBTRACT apply to list configs"
                    )
                items = [i for i in (current.get(op.name) or "").split(",") if i]
                for value in (op.value or "").split(","):
                    if op.config_operation == APPEND and value not in items:
                        items.append(value)
                    elif op.config_operation == SUBTRACT and value in items:
                        items.remove(value)
                current[op.name] = ",".join(items)
            else:
                raise InvalidTopicConfig(f"{op.name}: unknown operation {op.config_operation}")
        return current

    return change


@api(ApiKey.INCREMENTAL_ALTER_CONFIGS, (0, 1))
def incremental_alter_configs(ctx: RequestContext, request: Any) -> Any:
    return _alter_all(
        ctx,
        request,
        ApiKey.INCREMENTAL_ALTER_CONFIGS,
        "IncrementalAlterConfigsResponse",
        lambda res: _incremental(res.configs),
    )
