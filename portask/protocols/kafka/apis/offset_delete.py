"""OffsetDelete (key 47), version 0.

    v0  delete a group's committed offsets for some partitions (KIP-496)

Offsets of topics that members of the group still subscribe to are kept
(GROUP_SUBSCRIBED_TO_TOPIC), read from the members' consumer protocol metadata.

With ``kafka.authorizer``: DELETE on the group (else GROUP_AUTHORIZATION_FAILED) and READ
on each topic (else TOPIC_AUTHORIZATION_FAILED for its partitions).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from portask.broker.kafka.groups import TopicPartition
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import Operation, ResourceType, allowed
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import GROUP_ERRORS, ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE
from portask.protocols.kafka.wire import INT16, INT32

CONSUMER_PROTOCOL_TYPE = "consumer"


@api(ApiKey.OFFSET_DELETE, (0, 0))
def offset_delete(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.OFFSET_DELETE, ctx.api_version)
    checked = ctx.server.authorizer is not None
    if checked and not allowed(ctx, Operation.DELETE, ResourceType.GROUP, request.group_id):
        return registry.make(types.OffsetDeleteResponse,
                             error_code=ErrorCode.group_authorization_failed,
                             throttle_time=NO_THROTTLE, topics=())
    answers: dict[TopicPartition, ErrorCode] = {}
    known: list[TopicPartition] = []
    for t in request.topics:
        refused = checked and not allowed(ctx, Operation.READ, ResourceType.TOPIC, t.name)
        for p in t.partitions:
            tp = (t.name, p.partition_index)
            if refused:
                answers[tp] = ErrorCode.topic_authorization_failed
            elif ctx.broker.topics.partition(*tp) is None:
                answers[tp] = ErrorCode.unknown_topic_or_partition
            else:
                known.append(tp)
    group_error = None
    if known:
        group = ctx.broker.groups.get(request.group_id)
        subscribed = _subscriptions(group) if group is not None else None
        group_error, results = ctx.broker.groups.delete_offsets(
            request.group_id, known, subscribed
        )
        answers.update({tp: GROUP_ERRORS[error] for tp, error in results.items()})
    by_topic: dict[str, list[tuple[int, ErrorCode]]] = {}
    for (topic, index), code in answers.items():
        by_topic.setdefault(topic, []).append((index, code))
    return registry.make(
        types.OffsetDeleteResponse,
        error_code=GROUP_ERRORS[group_error],
        throttle_time=NO_THROTTLE,
        topics=tuple(
            registry.make(
                types.OffsetDeleteResponseTopic,
                name=name,
                partitions=tuple(
                    registry.make(
                        types.OffsetDeleteResponsePartition, partition_index=i, error_code=code
                    )
                    for i, code in partitions
                ),
            )
            for name, partitions in by_topic.items()
        ),
    )


def _subscriptions(group: Any) -> Callable[[str], bool] | None:
    """Whether the group's members subscribe to a topic, read from their consumer
    protocol metadata; None for groups that are not consumer groups."""
    if group.protocol_type != CONSUMER_PROTOCOL_TYPE:
        return None
    topics: set[str] = set()
    for member in group.members.values():
        parsed = subscribed_topics(member.metadata(group.protocol_name))
        if parsed is None:
            return lambda _topic: True  # unreadable: assume it is consumed, as Kafka does
        topics |= parsed
    return topics.__contains__


def subscribed_topics(metadata: bytes) -> set[str] | None:
    """Topics of a ConsumerProtocolSubscription (any version: the topic list comes first)."""
    try:
        INT16.unpack_from(metadata, 0)  # version
        count = INT32.unpack_from(metadata, 2)[0]
        pos, topics = 6, set()
        for _ in range(count):
            size = INT16.unpack_from(metadata, pos)[0]
            pos += 2
            if size < 0 or pos + size > len(metadata):
                return None
            topics.add(metadata[pos : pos + size].decode())
            pos += size
        return topics
    except (struct.error, UnicodeDecodeError):
        return None
