"""Metadata (key 3), versions 0-12.

    v0   brokers, topics, partitions (an empty topic list means all topics)
    v1   racks, controller id, internal flags; a null topic list means all topics
    v2   cluster id
    v3   throttle time
    v4   allow_auto_topic_creation
    v5   offline replicas
    v6   same as v5
    v7   leader epochs
    v8   authorized operations (KIP-430)
    v9   flexible
    v10  topic ids (KIP-516); a null topic name is INVALID_REQUEST before v12, as in Kafka
    v11  drops cluster authorized operations
    v12  topics may be named by id

This broker is a one-node cluster: node 0 leads every partition. Kafka's internal topic
names (``__consumer_offsets``, ``__transaction_state``) are never auto-created: they are
answered as internal topics that do not exist (see internal_topics.py).

With ``kafka.authorizer``: all topics means those the principal may DESCRIBE; a topic
asked for by name or id that it may not DESCRIBE is TOPIC_AUTHORIZATION_FAILED, and so
is one that auto-creation would create without CREATE on the cluster or the topic.
"""

from __future__ import annotations

from typing import Any

from portask.broker.kafka.topics import InvalidTopicName, Topic, check_name
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import (
    Operation,
    ResourceType,
    allowed,
    may_create_topic,
)
from portask.protocols.kafka.context import LEADER_EPOCH, NODE_ID, RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.internal_topics import INTERNAL_TOPICS
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE, OPERATIONS_UNKNOWN


@api(ApiKey.METADATA, (0, 12))
def metadata(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.METADATA, ctx.api_version)
    topics = ctx.broker.topics
    wanted = request.topics
    if wanted and ctx.api_version < 12 and any(entry.name is None for entry in wanted):
        # v10 and v11 have nullable names on the wire but no way to look a topic up by
        # id yet: Kafka refuses the request (InvalidRequestException).
        return _invalid_request(types, wanted)
    if wanted is None or (ctx.api_version == 0 and not wanted):
        checked = ctx.server.authorizer is not None
        # All topics: only those the principal may DESCRIBE, as Kafka filters them.
        results = [_topic(types, t) for t in topics if not checked
                   or allowed(ctx, Operation.DESCRIBE, ResourceType.TOPIC, t.name)]
    else:
        allow_create = getattr(request, "allow_auto_topic_creation", True)
        results = [_requested(ctx, types, entry, allow_create) for entry in wanted]
    host, port = ctx.connection.advertised_address()
    return registry.make(
        types.MetadataResponse,
        throttle_time=NO_THROTTLE,
        brokers=(
            registry.make(
                types.MetadataResponseBroker, node_id=NODE_ID, host=host, port=port, rack=None
            ),
        ),
        cluster_id=ctx.broker.cluster_id,
        controller_id=NODE_ID,
        topics=tuple(results),
        cluster_authorized_operations=OPERATIONS_UNKNOWN,
    )


def _requested(ctx: RequestContext, types: Any, entry: Any, allow_create: bool) -> Any:
    topics = ctx.broker.topics
    name = getattr(entry, "name", None)
    topic_id = getattr(entry, "topic_id", None)
    if name is None:
        found = topics.by_id(topic_id) if topic_id is not None else None
        if found is None:
            return _error(types, None, topic_id, ErrorCode.unknown_topic_id)
        if ctx.server.authorizer is not None and not allowed(
                ctx, Operation.DESCRIBE, ResourceType.TOPIC, found.name):
            return _error(types, None, topic_id, ErrorCode.topic_authorization_failed)
        return _topic(types, found)
    checked = ctx.server.authorizer is not None
    if checked and not allowed(ctx, Operation.DESCRIBE, ResourceType.TOPIC, name):
        return _error(types, name, None, ErrorCode.topic_authorization_failed)
    found = topics.get(name)
    if found is None:
        try:
            check_name(name)
        except InvalidTopicName:
            return _error(types, name, None, ErrorCode.invalid_topic_exception)
        if name in INTERNAL_TOPICS:
            return _error(types, name, None, ErrorCode.unknown_topic_or_partition, internal=True)
        if not (allow_create and ctx.server.settings.kafka.auto_create_topics):
            return _error(types, name, None, ErrorCode.unknown_topic_or_partition)
        if checked and not may_create_topic(ctx, name):
            return _error(types, name, None, ErrorCode.topic_authorization_failed)
        found = topics.create(name, ctx.server.settings.kafka.num_partitions)
    return _topic(types, found)


def _topic(types: Any, topic: Topic) -> Any:
    partitions = tuple(
        registry.make(
            types.MetadataResponsePartition,
            error_code=ErrorCode.none,
            partition_index=p.index,
            leader_id=NODE_ID,
            leader_epoch=LEADER_EPOCH,
            replica_nodes=(NODE_ID,),
            isr_nodes=(NODE_ID,),
            offline_replicas=(),
        )
        for p in topic.partitions
    )
    return registry.make(
        types.MetadataResponseTopic,
        error_code=ErrorCode.none,
        name=topic.name,
        topic_id=topic.topic_id,
        is_internal=False,
        partitions=partitions,
        topic_authorized_operations=OPERATIONS_UNKNOWN,
    )


def _error(
    types: Any, name: str | None, topic_id: Any, code: ErrorCode, *, internal: bool = False
) -> Any:
    return registry.make(
        types.MetadataResponseTopic,
        error_code=code,
        name=name,
        topic_id=topic_id,
        is_internal=internal,
        partitions=(),
        topic_authorized_operations=OPERATIONS_UNKNOWN,
    )


def _invalid_request(types: Any, wanted: Any) -> Any:
    """Kafka's error answer to a Metadata request (MetadataRequest.getErrorResponse):
    every topic asked for, with the error and no partitions; "" for a null name, which
    this version's response cannot carry."""
    return registry.make(
        types.MetadataResponse,
        throttle_time=NO_THROTTLE,
        brokers=(),
        cluster_id=None,
        controller_id=-1,
        topics=tuple(
            registry.make(
                types.MetadataResponseTopic,
                error_code=ErrorCode.invalid_request,
                name=entry.name if entry.name is not None else "",
                topic_id=getattr(entry, "topic_id", None),
                is_internal=False,
                partitions=(),
                topic_authorized_operations=OPERATIONS_UNKNOWN,
            )
            for entry in wanted
        ),
        cluster_authorized_operations=OPERATIONS_UNKNOWN,
    )

