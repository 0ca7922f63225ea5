"""Committed offsets: OffsetCommit (8), OffsetFetch (9), OffsetDelete (47).

OffsetCommit v2-v9 (kio has no v0-v1, which Kafka 4 dropped too): v2 retention time
(ignored: offsets are kept until deleted); v3 throttle time; v4 same; v5 drops
retention time; v6 leader epochs; v7 group.instance.id; v8 flexible; v9 same for
classic groups. A commit with generation -1 from a consumer outside any group is
accepted while the group is empty, as Kafka does.
OffsetFetch v1-v9: v2 null topics = every partition with an offset, group error; v3
throttle time; v4 same; v5 leader epochs; v6 flexible; v7 require_stable (accepted;
no transactional commit is reported pending); v8 batched groups; v9 member id and
epoch (for the new consumer protocol; ignored for classic groups).
OffsetDelete v0.

Offsets are stored by the coordinator (broker/groups.py) in the durable definitions
store, so a restart keeps them.
"""

from __future__ import annotations

import datetime
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

from portask.broker.groups import OffsetEntry, TopicPartition
from portask.protocols.kafka import registry
from portask.protocols.kafka.apis.classic_group import ERRORS
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.server import RequestContext

log = logging.getLogger("portask.kafka")

OFFSET_COMMIT, OFFSET_FETCH, OFFSET_DELETE = 8, 9, 47
CONSUMER_PROTOCOL_TYPE = "consumer"
_NO_THROTTLE = datetime.timedelta(0)
_INT16, _INT32 = struct.Struct(">h"), struct.Struct(">i")


@api(OFFSET_COMMIT, "offset_commit", (2, 9))
def offset_commit(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(OFFSET_COMMIT, ctx.api_version)
    topics = ctx.broker.topics
    limit = int(ctx.server.settings.kafka.offset_metadata_max_bytes)
    now = int(time.time() * 1000)
    answers: dict[TopicPartition, ErrorCode] = {}
    wanted: dict[TopicPartition, OffsetEntry] = {}
    for t in request.topics:
        for p in t.partitions:
            tp = (t.name, p.partition_index)
            metadata = p.committed_metadata or ""
            if topics.partition(*tp) is None:
                answers[tp] = ErrorCode.unknown_topic_or_partition
            elif len(metadata.encode()) > limit:
                answers[tp] = ErrorCode.offset_metadata_too_large
            else:
                epoch = getattr(p, "committed_leader_epoch", -1)
                wanted[tp] = OffsetEntry(p.committed_offset, epoch, metadata, now)
    if answers:
        log.info(
            "offset commit refused for some partitions",
            extra={"fields": {"group": request.group_id, "partitions": {
                f"{t}-{p}": code.name for (t, p), code in answers.items()}}},
        )
    if wanted:
        error = ctx.broker.groups.commit_offsets(
            request.group_id,
            request.member_id,
            getattr(request, "group_instance_id", None),
            request.generation_id_or_member_epoch,
            wanted,
        )
        answers.update({tp: ERRORS[error] for tp in wanted})
    return registry.make(
        types.OffsetCommitResponse,
        throttle_time=_NO_THROTTLE,
        topics=tuple(
            registry.make(
                types.OffsetCommitResponseTopic,
                name=t.name,
                partitions=tuple(
                    registry.make(
                        types.OffsetCommitResponsePartition,
                        partition_index=p.partition_index,
                        error_code=answers[(t.name, p.partition_index)],
                    )
                    for p in t.partitions
                ),
            )
            for t in request.topics
        ),
    )


@api(OFFSET_FETCH, "offset_fetch", (1, 9))
def offset_fetch(ctx: RequestContext, request: Any) -> Any:
    version = ctx.api_version
    types = registry.response_types(OFFSET_FETCH, version)
    if version >= 8:
        groups = tuple(
            registry.make(
                types.OffsetFetchResponseGroup,
                group_id=g.group_id,
                topics=_fetch(ctx, types, g.group_id, g.topics, batched=True),
                error_code=ErrorCode.none,
            )
            for g in request.groups
        )
        return registry.make(
            types.OffsetFetchResponse, throttle_time=_NO_THROTTLE, groups=groups
        )
    return registry.make(
        types.OffsetFetchResponse,
        throttle_time=_NO_THROTTLE,
        topics=_fetch(ctx, types, request.group_id, request.topics, batched=False),
        error_code=ErrorCode.none,
    )


def _fetch(ctx: RequestContext, types: Any, group_id: str, topics: Any, *, batched: bool) -> Any:
    topic_type = types.OffsetFetchResponseTopics if batched else types.OffsetFetchResponseTopic
    partition_type = (
        types.OffsetFetchResponsePartitions if batched else types.OffsetFetchResponsePartition
    )
    groups = ctx.broker.groups
    by_topic: dict[str, list[tuple[int, OffsetEntry | None]]] = {}
    if topics is None:
        for (topic, index), entry in groups.committed(group_id).items():
            by_topic.setdefault(topic, []).append((index, entry))
    else:
        for t in topics:
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
                    error_code=ErrorCode.none,
                )
                for index, entry in partitions
            ),
        )
        for name, partitions in by_topic.items()
    )


@api(OFFSET_DELETE, "offset_delete", (0, 0))
def offset_delete(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(OFFSET_DELETE, ctx.api_version)
    answers: dict[TopicPartition, ErrorCode] = {}
    known: list[TopicPartition] = []
    for t in request.topics:
        for p in t.partitions:
            tp = (t.name, p.partition_index)
            if ctx.broker.topics.partition(*tp) is None:
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
        answers.update({tp: ERRORS[error] for tp, error in results.items()})
    by_topic: dict[str, list[tuple[int, ErrorCode]]] = {}
    for (topic, index), code in answers.items():
        by_topic.setdefault(topic, []).append((index, code))
    return registry.make(
        types.OffsetDeleteResponse,
        error_code=ERRORS[group_error],
        throttle_time=_NO_THROTTLE,
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
        _INT16.unpack_from(metadata, 0)  # version
        count = _INT32.unpack_from(metadata, 2)[0]
        pos, topics = 6, set()
        for _ in range(count):
            size = _INT16.unpack_from(metadata, pos)[0]
            pos += 2
            if size < 0 or pos + size > len(metadata):
                return None
            topics.add(metadata[pos : pos + size].decode())
            pos += size
        return topics
    except (struct.error, UnicodeDecodeError):
        return None
