"""OffsetCommit (key 8), versions 0-9.

    v0  group, offsets and metadata, no generation (Kafka 3.7 writes v0 commits to
        ZooKeeper; here they go to the coordinator like any commit with generation -1,
        and OffsetFetch v0 reads them back)
    v1  generation and member id; a commit timestamp per partition (kept as the
        commit's time when given)
    v2  retention time (ignored: offsets are kept until deleted)
    v3  throttle time
    v4  same as v3
    v5  drops retention time
    v6  committed leader epochs
    v7  group.instance.id
    v8  flexible
    v9  same as v8 for classic groups; for a consumer-protocol group (KIP-848) the
        member epoch, checked (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH)

With ``kafka.authorizer``: READ on the group (else GROUP_AUTHORIZATION_FAILED for every
partition) and on each topic (else TOPIC_AUTHORIZATION_FAILED for its partitions).

A commit with generation -1 from a consumer outside any group is accepted while the
group is empty, as Kafka does. Offsets are stored by the coordinator (broker/kafka/groups/)
in the durable definitions store, so a restart keeps them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from portask.broker.kafka.groups import OffsetEntry, TopicPartition
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import Operation, ResourceType, allowed
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import GROUP_ERRORS, ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE, per_partition

log = logging.getLogger("portask.kafka")


@api(ApiKey.OFFSET_COMMIT, (0, 9))
def offset_commit(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.OFFSET_COMMIT, ctx.api_version)
    topics = ctx.broker.topics
    limit = int(ctx.server.settings.kafka.offset_metadata_max_bytes)
    now = int(time.time() * 1000)
    answers: dict[TopicPartition, ErrorCode] = {}
    wanted: dict[TopicPartition, OffsetEntry] = {}
    checked = ctx.server.authorizer is not None
    # Kafka: READ on the group for the whole request, then READ on each topic.
    group_refused = checked and not allowed(ctx, Operation.READ, ResourceType.GROUP,
                                            request.group_id)
    for t in request.topics:
        topic_refused = checked and not group_refused and not allowed(
            ctx, Operation.READ, ResourceType.TOPIC, t.name)
        for p in t.partitions:
            tp = (t.name, p.partition_index)
            metadata = p.committed_metadata or ""
            if group_refused:
                answers[tp] = ErrorCode.group_authorization_failed
            elif topic_refused:
                answers[tp] = ErrorCode.topic_authorization_failed
            elif topics.partition(*tp) is None:
                answers[tp] = ErrorCode.unknown_topic_or_partition
            elif len(metadata.encode()) > limit:
                answers[tp] = ErrorCode.offset_metadata_too_large
            else:
                epoch = getattr(p, "committed_leader_epoch", -1)
                stamp = getattr(p, "commit_timestamp", -1)
                wanted[tp] = OffsetEntry(
                    p.committed_offset, epoch, metadata, stamp if stamp >= 0 else now
                )
    if answers:
        log.info(
            "offset commit refused for some partitions",
            extra={"fields": {"group": request.group_id, "partitions": {
                f"{t}-{p}": code.name for (t, p), code in answers.items()}}},
        )
    if wanted:
        error = ctx.broker.groups.commit_offsets(
            request.group_id,
            getattr(request, "member_id", ""),
            getattr(request, "group_instance_id", None),
            getattr(request, "generation_id_or_member_epoch", -1),
            wanted,
        )
        answers.update({tp: GROUP_ERRORS[error] for tp in wanted})
    return registry.make(
        types.OffsetCommitResponse,
        throttle_time=NO_THROTTLE,
        topics=per_partition(
            request.topics,
            types.OffsetCommitResponseTopic,
            lambda t, p: registry.make(
                types.OffsetCommitResponsePartition,
                partition_index=p.partition_index,
                error_code=answers[(t.name, p.partition_index)],
            ),
        ),
    )
