"""OffsetForLeaderEpoch (key 23), versions 0-4.

    v0  the end offset of each requested epoch
    v1  the answer names the epoch it found
    v2  current leader epoch in the request
    v3  replica id in the request (-1 from consumers)
    v4  flexible

This node has only ever had leader epoch 0, so epoch 0 ends at the high watermark and
any later epoch is unknown. With ``kafka.authorizer``, DESCRIBE on the topic (else
TOPIC_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

from typing import Any

from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import Operation, ResourceType, allowed
from portask.protocols.kafka.context import LEADER_EPOCH, RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE, per_partition


@api(ApiKey.OFFSET_FOR_LEADER_EPOCH, (0, 4))
def offset_for_leader_epoch(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.OFFSET_FOR_LEADER_EPOCH, ctx.api_version)
    topics = ctx.broker.topics
    checked = ctx.server.authorizer is not None

    def answer(topic: Any, p: Any) -> Any:
        partition = topics.partition(topic.topic, p.partition)
        if checked and not allowed(ctx, Operation.DESCRIBE, ResourceType.TOPIC, topic.topic):
            error, epoch, end = ErrorCode.topic_authorization_failed, -1, -1
        elif partition is None:
            error, epoch, end = ErrorCode.unknown_topic_or_partition, -1, -1
        elif getattr(p, "current_leader_epoch", -1) > LEADER_EPOCH:
            error, epoch, end = ErrorCode.unknown_leader_epoch, -1, -1
        elif p.leader_epoch == LEADER_EPOCH:
            error, epoch, end = ErrorCode.none, LEADER_EPOCH, partition.high_watermark
        else:
            # An epoch this log never had: Kafka answers "undefined" without an error.
            error, epoch, end = ErrorCode.none, -1, -1
        return registry.make(
            types.EpochEndOffset,
            error_code=error,
            partition=p.partition,
            leader_epoch=epoch,
            end_offset=end,
        )

    return registry.make(
        types.OffsetForLeaderEpochResponse,
        throttle_time=NO_THROTTLE,
        topics=per_partition(
            request.topics, types.OffsetForLeaderTopicResult, answer, topic_field="topic"
        ),
    )
