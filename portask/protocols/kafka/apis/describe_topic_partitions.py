"""DescribeTopicPartitions (key 75), version 0 (KIP-966; Kafka 3.8+, flexible).

The Java AdminClient's describeTopics uses it from 3.8 on. Topics are answered in name
order, partitions from the cursor's on, at most ``response_partition_limit`` of them
(and at most 2000, Kafka's ``max.request.partition.size.limit``); when the limit stops
the answer inside a topic, ``next_cursor`` names the next partition, and when it stops
exactly at a topic's end, the next topic's partition 0, as Kafka's metadata cache does.
No topics named means every topic; a named topic that does not exist is answered with
UNKNOWN_TOPIC_OR_PARTITION (INVALID_TOPIC_EXCEPTION for an illegal name).
"""

from __future__ import annotations

import uuid
from typing import Any

from portask.broker.kafka.topics import InvalidTopicName, Topic, check_name
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.context import LEADER_EPOCH, NODE_ID, RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.internal_topics import INTERNAL_TOPICS
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE, OPERATIONS_UNKNOWN

MAX_PARTITIONS = 2000  # Kafka's max.request.partition.size.limit default


@api(ApiKey.DESCRIBE_TOPIC_PARTITIONS, (0, 0))
def describe_topic_partitions(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.DESCRIBE_TOPIC_PARTITIONS, ctx.api_version)
    topics = ctx.broker.topics
    cursor = request.cursor
    after = cursor.topic_name if cursor is not None else ""
    every = not request.topics
    names = {t.name for t in topics} if every else {t.name for t in request.topics}
    names = {n for n in names if n >= after}
    if cursor is not None and (cursor.partition_index < 0 or (not every and after not in names)):
        # Kafka throws InvalidRequestException: the whole request fails.
        return registry.make(
            types.DescribeTopicPartitionsResponse,
            throttle_time=NO_THROTTLE,
            topics=tuple(
                _topic(types, name, None, ErrorCode.invalid_request, ())
                for name in sorted({t.name for t in request.topics})
            ),
            next_cursor=None,
        )
    remaining = max(min(MAX_PARTITIONS, request.response_partition_limit), 1)
    out: list[Any] = []
    next_cursor = None
    for name in sorted(names):
        if remaining == 0:
            next_cursor = registry.make(types.Cursor, topic_name=name, partition_index=0)
            break
        topic = topics.get(name)
        if topic is None:
            if not every:
                out.append(_topic(types, name, None, _missing(name), ()))
            continue
        start = cursor.partition_index if cursor is not None and name == after else 0
        chosen = topic.partitions[start : start + remaining]
        out.append(_topic(types, name, topic, ErrorCode.none, _partitions(types, chosen)))
        if start + len(chosen) < len(topic.partitions):
            next_cursor = registry.make(
                types.Cursor, topic_name=name, partition_index=start + len(chosen)
            )
            break
        remaining -= len(chosen)
    return registry.make(
        types.DescribeTopicPartitionsResponse,
        throttle_time=NO_THROTTLE,
        topics=tuple(out),
        next_cursor=next_cursor,
    )


def _missing(name: str) -> ErrorCode:
    try:
        check_name(name)
    except InvalidTopicName:
        return ErrorCode.invalid_topic_exception
    return ErrorCode.unknown_topic_or_partition


def _partitions(types: Any, partitions: Any) -> tuple[Any, ...]:
    return tuple(
        registry.make(
            types.DescribeTopicPartitionsResponsePartition,
            error_code=ErrorCode.none,
            partition_index=p.index,
            leader_id=NODE_ID,
            leader_epoch=LEADER_EPOCH,
            replica_nodes=(NODE_ID,),
            isr_nodes=(NODE_ID,),
            eligible_leader_replicas=(),
            last_known_elr=(),
            offline_replicas=(),
        )
        for p in partitions
    )


def _topic(types: Any, name: str, topic: Topic | None, error: ErrorCode,
           partitions: tuple[Any, ...]) -> Any:
    return registry.make(
        types.DescribeTopicPartitionsResponseTopic,
        error_code=error,
        name=name,
        # Kafka answers the zero uuid for a topic it does not have.
        topic_id=topic.topic_id if topic is not None else uuid.UUID(int=0),
        is_internal=name in INTERNAL_TOPICS,
        partitions=partitions,
        topic_authorized_operations=OPERATIONS_UNKNOWN,
    )
