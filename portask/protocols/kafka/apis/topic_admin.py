"""Topic administration: CreateTopics (19), DeleteTopics (20), DeleteRecords (21),
CreatePartitions (37).

CreateTopics, versions 0-7:
    v1  validate_only; error messages
    v2  throttle time
    v3  same as v2
    v4  -1 for partitions or replication factor means the broker's default (KIP-464)
    v5  flexible; the answer carries the topic's effective configs and sizes
    v6  same as v5
    v7  topic ids (KIP-516)
DeleteTopics, versions 0-6:
    v1  throttle time
    v2  same as v1
    v3  same as v2
    v4  flexible
    v5  error messages
    v6  topics by id
DeleteRecords, versions 0-2:
    v1  same as v0
    v2  flexible
CreatePartitions, versions 0-3:
    v1  same as v0
    v2  flexible
    v3  same as v2

With ``kafka.authorizer``: CREATE on the cluster or the topic to create it, DELETE on
the topic to delete it or its records, ALTER to add partitions; else
TOPIC_AUTHORIZATION_FAILED ("Authorization failed.").

A single node holds one replica: a replication factor above 1 is refused with
INVALID_REPLICATION_FACTOR unless ``kafka.clamp_replication_factor`` says to accept it
as 1. Kafka's internal topic names are refused with INVALID_REQUEST: the state Kafka
keeps in them lives in Portask's definitions store (see internal_topics.py).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from portask.broker.kafka.topic_configs import InvalidTopicConfig
from portask.broker.kafka.topics import (
    InvalidPartitionCount,
    InvalidTopicName,
    TopicError,
    TopicExists,
    UnknownTopic,
)
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.apis.configs import CONFIG_SOURCE_DEFAULT, CONFIG_SOURCE_TOPIC
from portask.protocols.kafka.authorization import (
    Operation,
    ResourceType,
    allowed,
    may_create_topic,
)
from portask.protocols.kafka.context import NODE_ID, RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.internal_topics import INTERNAL_TOPICS
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE, per_partition

_TOPIC_ERRORS: dict[type[Exception], ErrorCode] = {
    TopicExists: ErrorCode.topic_already_exists,
    InvalidTopicName: ErrorCode.invalid_topic_exception,
    InvalidPartitionCount: ErrorCode.invalid_partitions,
    UnknownTopic: ErrorCode.unknown_topic_or_partition,
    InvalidTopicConfig: ErrorCode.invalid_config,
}


class _Refused(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


# Kafka's text for a topic the principal may not create, delete or alter.
_AUTHORIZATION_FAILED = "Authorization failed."


def _allowed(ctx: RequestContext, operation: Operation, topic: str | None) -> bool:
    return ctx.server.authorizer is None or (
        topic is not None and allowed(ctx, operation, ResourceType.TOPIC, topic))


def _error_of(exc: Exception) -> tuple[ErrorCode, str]:
    if isinstance(exc, _Refused):
        return exc.code, str(exc)
    return _TOPIC_ERRORS[type(exc)], str(exc)


def _replication(ctx: RequestContext, factor: int) -> None:
    if factor == -1 or factor == 1:
        return
    if factor > 1 and ctx.server.settings.kafka.clamp_replication_factor:
        return
    raise _Refused(
        ErrorCode.invalid_replication_factor,
        f"replication factor {factor} is not possible on a single-node broker; use 1 "
        "(or set kafka.clamp_replication_factor)",
    )


def _assignments_partitions(assignments: Any) -> int | None:
    """Partitions implied by explicit assignments; every replica must be this node."""
    if not assignments:
        return None
    for a in assignments:
        if tuple(a.broker_ids) != (NODE_ID,):
            raise _Refused(
                ErrorCode.invalid_replica_assignment,
                f"replica assignment {list(a.broker_ids)} names brokers other than {NODE_ID}",
            )
    return len(assignments)


@api(ApiKey.CREATE_TOPICS, (0, 7))
def create_topics(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.CREATE_TOPICS, ctx.api_version)
    topics = ctx.broker.topics
    defaults = ctx.server.settings.kafka
    duplicates = {n for n, c in Counter(t.name for t in request.topics).items() if c > 1}
    checked = ctx.server.authorizer is not None
    results = []
    for t in request.topics:
        partitions = t.num_partitions if t.num_partitions != -1 else defaults.num_partitions
        error, message, created = ErrorCode.none, None, None
        try:
            if t.name in duplicates:
                raise _Refused(
                    ErrorCode.invalid_request,
                    f"topic {t.name!r} appears more than once in the request",
                )
            if checked and not may_create_topic(ctx, t.name):
                raise _Refused(ErrorCode.topic_authorization_failed, _AUTHORIZATION_FAILED)
            if t.name in INTERNAL_TOPICS:
                raise _Refused(
                    ErrorCode.invalid_request,
                    f"{t.name!r} is the name of a Kafka internal topic; this broker keeps "
                    "that state in its own store and cannot create a topic with it",
                )
            _replication(ctx, t.replication_factor)
            explicit = _assignments_partitions(t.assignments)
            if explicit is not None:
                if t.num_partitions != -1:
                    raise _Refused(
                        ErrorCode.invalid_request,
                        "give either num_partitions or assignments, not both",
                    )
                partitions = explicit
            configs = {c.name: c.value for c in t.configs}
            if getattr(request, "validate_only", False):
                topics.check_new(t.name, partitions, configs)
            else:
                created = topics.create(t.name, partitions, configs)
        except (TopicError, InvalidTopicConfig, _Refused) as exc:
            error, message = _error_of(exc)
        effective = ()
        # v5+ answers with the configs now in force.
        if error == ErrorCode.none and created is not None and ctx.api_version >= 5:
            effective = tuple(
                registry.make(
                    types.CreatableTopicConfigs,
                    name=name,
                    value=value,
                    read_only=False,
                    config_source=CONFIG_SOURCE_TOPIC
                    if name in created.configs
                    else CONFIG_SOURCE_DEFAULT,
                    is_sensitive=False,
                )
                for name, value in topics.effective_configs(created).items()
            )
        results.append(
            registry.make(
                types.CreatableTopicResult,
                name=t.name,
                topic_id=created.topic_id if created is not None else None,
                error_code=error,
                error_message=message,
                topic_config_error_code=0,
                num_partitions=partitions if error == ErrorCode.none else -1,
                replication_factor=1 if error == ErrorCode.none else -1,
                configs=effective if error == ErrorCode.none else None,
            )
        )
    return registry.make(
        types.CreateTopicsResponse, throttle_time=NO_THROTTLE, topics=tuple(results)
    )


@api(ApiKey.DELETE_TOPICS, (0, 6))
def delete_topics(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.DELETE_TOPICS, ctx.api_version)
    topics = ctx.broker.topics
    if ctx.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    results = []
    for name, topic_id in wanted:
        error, message = ErrorCode.none, None
        if name is None and topic_id is not None:
            found = topics.by_id(topic_id)
            if found is None:
                error, message = ErrorCode.unknown_topic_id, f"no topic with id {topic_id}"
            else:
                name = found.name
        if error == ErrorCode.none and not _allowed(ctx, Operation.DELETE, name):
            error, message = ErrorCode.topic_authorization_failed, _AUTHORIZATION_FAILED
        if error == ErrorCode.none:
            assert name is not None
            found = topics.get(name)
            topic_id = found.topic_id if found is not None else topic_id
            try:
                topics.delete(name)
            except UnknownTopic as exc:
                error, message = _error_of(exc)
        results.append(
            registry.make(
                types.DeletableTopicResult,
                name=name,
                topic_id=topic_id,
                error_code=error,
                error_message=message,
            )
        )
    return registry.make(
        types.DeleteTopicsResponse, throttle_time=NO_THROTTLE, responses=tuple(results)
    )


@api(ApiKey.CREATE_PARTITIONS, (0, 3))
def create_partitions(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.CREATE_PARTITIONS, ctx.api_version)
    results = []
    for t in request.topics:
        error, message = ErrorCode.none, None
        try:
            if not _allowed(ctx, Operation.ALTER, t.name):
                raise _Refused(ErrorCode.topic_authorization_failed, _AUTHORIZATION_FAILED)
            for a in t.assignments or ():
                if tuple(a.broker_ids) != (NODE_ID,):
                    raise _Refused(
                        ErrorCode.invalid_replica_assignment,
                        f"replica assignment {list(a.broker_ids)} names other brokers",
                    )
            ctx.broker.topics.add_partitions(t.name, t.count, validate_only=request.validate_only)
        except (TopicError, _Refused) as exc:
            error, message = _error_of(exc)
        results.append(
            registry.make(
                types.CreatePartitionsTopicResult,
                name=t.name,
                error_code=error,
                error_message=message,
            )
        )
    return registry.make(
        types.CreatePartitionsResponse, throttle_time=NO_THROTTLE, results=tuple(results)
    )


@api(ApiKey.DELETE_RECORDS, (0, 2))
def delete_records(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.DELETE_RECORDS, ctx.api_version)
    topics = ctx.broker.topics

    def answer(topic: Any, p: Any) -> Any:
        partition = topics.partition(topic.name, p.partition_index)
        error, low = ErrorCode.none, -1
        if not _allowed(ctx, Operation.DELETE, topic.name):
            error = ErrorCode.topic_authorization_failed
        elif partition is None:
            error = ErrorCode.unknown_topic_or_partition
        else:
            # -1 means "up to the high watermark", as in Kafka's AdminClient.
            target = partition.high_watermark if p.offset == -1 else p.offset
            if not 0 <= target <= partition.high_watermark:
                error = ErrorCode.offset_out_of_range
            else:
                if target > partition.log_start_offset:
                    partition.log.delete_before(target)
                low = partition.log_start_offset
        return registry.make(
            types.DeleteRecordsPartitionResult,
            partition_index=p.partition_index,
            low_watermark=low,
            error_code=error,
        )

    return registry.make(
        types.DeleteRecordsResponse,
        throttle_time=NO_THROTTLE,
        topics=per_partition(request.topics, types.DeleteRecordsTopicResult, answer),
    )
