"""OffsetFetch (key 9), versions 0-9.

    v0  the same answer as v1 (Kafka 3.7 reads v0 from ZooKeeper, where OffsetCommit v0
        wrote; here both go to the coordinator)
    v1  offsets kept by the coordinator
    v2  null topics means every partition with an offset; a group-level error
    v3  throttle time
    v4  same as v3
    v5  committed leader epochs
    v6  flexible
    v7  require_stable (accepted; no transactional commit is ever reported pending)
    v8  several groups in one request
    v9  member id and epoch: checked against a consumer-protocol group (KIP-848:
        UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH), ignored for classic groups

With ``kafka.authorizer``: DESCRIBE on the group (else GROUP_AUTHORIZATION_FAILED) and on
each topic (a topic asked for is TOPIC_AUTHORIZATION_FAILED; "all topics" leaves it out).
"""

from __future__ import annotations

from typing import Any

from portask.broker.kafka.groups import OffsetEntry
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import Operation, ResourceType, allowed
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import GROUP_ERRORS, ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE


@api(ApiKey.OFFSET_FETCH, (0, 9))
def offset_fetch(ctx: RequestContext, request: Any) -> Any:
    version = ctx.api_version
    types = registry.response_types(ApiKey.OFFSET_FETCH, version)
    if version >= 8:
        errors = {
            g.group_id: _REFUSED if _refused(ctx, g.group_id) else GROUP_ERRORS[
                ctx.broker.groups.check_offset_fetch(
                    g.group_id, getattr(g, "member_id", None), getattr(g, "member_epoch", -1))]
            for g in request.groups
        }
        groups = tuple(
            registry.make(
                types.OffsetFetchResponseGroup,
                group_id=g.group_id,
                topics=() if errors[g.group_id] != ErrorCode.none else
                _fetch(ctx, types, g.group_id, g.topics, batched=True),
                error_code=errors[g.group_id],
            )
            for g in request.groups
        )
        return registry.make(
            types.OffsetFetchResponse, throttle_time=NO_THROTTLE, groups=groups
        )
    if _refused(ctx, request.group_id):
        # v1 has no request-level error: each partition asked for carries it.
        topics = () if version >= 2 else tuple(
            registry.make(types.OffsetFetchResponseTopic, name=t.name, partitions=tuple(
                registry.make(types.OffsetFetchResponsePartition, partition_index=i,
                              committed_offset=-1, metadata="", error_code=_REFUSED)
                for i in t.partition_indexes))
            for t in request.topics or ())
        return registry.make(types.OffsetFetchResponse, throttle_time=NO_THROTTLE,
                             topics=topics, error_code=_REFUSED)
    return registry.make(
        types.OffsetFetchResponse,
        throttle_time=NO_THROTTLE,
        topics=_fetch(ctx, types, request.group_id, request.topics, batched=False),
        error_code=ErrorCode.none,
    )


_REFUSED = ErrorCode.group_authorization_failed


def _refused(ctx: RequestContext, group_id: str) -> bool:
    """Kafka asks for DESCRIBE on the group, then on each topic."""
    return ctx.server.authorizer is not None and not allowed(
        ctx, Operation.DESCRIBE, ResourceType.GROUP, group_id)


def _topic_refused(ctx: RequestContext, topic: str) -> bool:
    return ctx.server.authorizer is not None and not allowed(
        ctx, Operation.DESCRIBE, ResourceType.TOPIC, topic)


def _fetch(ctx: RequestContext, types: Any, group_id: str, topics: Any, *, batched: bool) -> Any:
    topic_type = types.OffsetFetchResponseTopics if batched else types.OffsetFetchResponseTopic
    partition_type = (
        types.OffsetFetchResponsePartitions if batched else types.OffsetFetchResponsePartition
    )
    groups = ctx.broker.groups
    by_topic: dict[str, list[tuple[int, OffsetEntry | None]]] = {}
    refused: set[str] = set()
    if topics is None:
        # All the group's topics: only those the principal may DESCRIBE.
        for (topic, index), entry in groups.committed(group_id).items():
            if not _topic_refused(ctx, topic):
                by_topic.setdefault(topic, []).append((index, entry))
    else:
        for t in topics:
            if _topic_refused(ctx, t.name):
                refused.add(t.name)
                by_topic[t.name] = [(i, None) for i in t.partition_indexes]
                continue
            found = groups.committed(group_id, [(t.name, i) for i in t.partition_indexes])
            by_topic.setdefault(t.name, []).extend(
                (i, found[(t.name, i)]) for i in t.partition_indexes
            )
    return tuple(
        registry.make(
            topic_type,
            name=name,
            partitions=tuple(
                registry.make(
                    partition_type,
                    partition_index=index,
                    # No commit: offset -1 and empty metadata, with no error (Kafka's answer).
                    committed_offset=entry.offset if entry else -1,
                    committed_leader_epoch=entry.leader_epoch if entry else -1,
                    metadata=entry.metadata if entry else "",
                    error_code=ErrorCode.topic_authorization_failed if name in refused
                    else ErrorCode.none,
                )
                for index, entry in partitions
            ),
        )
        for name, partitions in by_topic.items()
    )
