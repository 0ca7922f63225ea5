"""ListOffsets (key 2), versions 0-8.

    v0  up to max_num_offsets offsets per partition, newest first (see _old_style)
    v1  one offset per partition, with its timestamp
    v2  isolation level (read_committed answers the last stable offset)
    v3  same as v2
    v4  current leader epoch in the request, leader epoch in the answer
    v5  same as v4
    v6  flexible
    v7  max timestamp (-3, KIP-734)
    v8  earliest local (-4, KIP-405; answered as earliest: there is no tiered storage)

With ``kafka.authorizer``, DESCRIBE on the topic (else TOPIC_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

import logging
from typing import Any

from portask.broker.kafka.topics import Partition
from portask.protocols.kafka import records, registry, txn_markers
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import Operation, ResourceType, allowed
from portask.protocols.kafka.context import LEADER_EPOCH, RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE, per_partition

LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL = -1, -2, -3, -4
READ_COMMITTED = 1

logger = logging.getLogger("portask.kafka")


@api(ApiKey.LIST_OFFSETS, (0, 8))
def list_offsets(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.LIST_OFFSETS, ctx.api_version)
    topics = ctx.broker.topics
    committed = getattr(request, "isolation_level", 0) == READ_COMMITTED
    limit = int(ctx.server.settings.kafka.max_uncompressed_batch_bytes)

    checked = ctx.server.authorizer is not None

    def answer(topic: Any, p: Any) -> Any:
        # Kafka asks for DESCRIBE on the topic (per partition: the answer is per partition).
        refused = checked and not allowed(ctx, Operation.DESCRIBE, ResourceType.TOPIC,
                                          topic.name)
        partition = None if refused else topics.partition(topic.name, p.partition_index)
        if partition is None:
            return registry.make(
                types.ListOffsetsPartitionResponse,
                partition_index=p.partition_index,
                error_code=ErrorCode.topic_authorization_failed if refused
                else ErrorCode.unknown_topic_or_partition,
                timestamp=-1,
                offset=-1,
                leader_epoch=-1,
                old_style_offsets=(),
            )
        if ctx.api_version == 0:
            return registry.make(
                types.ListOffsetsPartitionResponse,
                partition_index=p.partition_index,
                error_code=ErrorCode.none,
                old_style_offsets=_old_style(partition, p.timestamp, p.max_num_offsets, limit),
            )
        offset, timestamp = _lookup(partition, p.timestamp, limit)
        if p.timestamp == LATEST and committed:
            txn_markers.ensure_rebuilt(ctx.broker, partition)
            offset = partition.transactions.last_stable_offset(offset)
        return registry.make(
            types.ListOffsetsPartitionResponse,
            partition_index=p.partition_index,
            error_code=ErrorCode.none,
            timestamp=timestamp,
            offset=offset,
            leader_epoch=LEADER_EPOCH if offset >= 0 else -1,
        )

    return registry.make(
        types.ListOffsetsResponse,
        throttle_time=NO_THROTTLE,
        topics=per_partition(request.topics, types.ListOffsetsTopicResponse, answer),
    )


def _old_style(partition: Partition, timestamp: int, max_num: int, limit: int) -> tuple[int, ...]:
    """ListOffsets v0, as Kafka's legacyFetchOffsetsBefore: candidate offsets are each
    segment's first live offset and the log end; latest starts from the end, earliest
    from the first segment, newest first, at most ``max_num`` of them. For a timestamp
    Kafka picks segments by file modification time, which says little about the records
    in them; here the candidate is the offset v1 answers for it (the first record at or
    after the time), or the log end when there is none."""
    log = partition.log
    start, end = log.start_offset, log.end_offset
    candidates = sorted({max(base, start) for base in log.segment_base_offsets if base < end})
    candidates.append(end)
    if timestamp == LATEST:
        chosen = candidates
    elif timestamp in (EARLIEST, EARLIEST_LOCAL):
        chosen = candidates[:1]
    elif timestamp < 0:
        return ()
    else:
        offset, _ = _lookup(partition, timestamp, limit)
        chosen = [end if offset < 0 else offset]
    return tuple(sorted(chosen, reverse=True)[: max(max_num, 0)])


def _lookup(partition: Partition, timestamp: int, limit: int) -> tuple[int, int]:
    """(offset, timestamp) for one ListOffsets query; -1 for "no such offset"."""
    log = partition.log
    if timestamp == LATEST:
        return log.end_offset, -1
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return log.start_offset, -1
    if timestamp == MAX_TIMESTAMP:
        found = log.max_timestamp
        return (found[1], found[0]) if found is not None else (-1, -1)
    if timestamp < 0:
        return -1, -1
    start = log.offset_for_timestamp(timestamp)
    if start is None:
        return -1, -1
    # The log finds the first batch that may hold the time; the answer is the first
    # record in or after it whose own timestamp is late enough.
    for entry in partition.scan(start):
        try:
            for delta, record_ts in records.record_timestamps(entry.payload, limit):
                if record_ts >= timestamp and entry.offset + delta >= start:
                    return entry.offset + delta, record_ts
        except records.InvalidBatch as exc:
            # Records the broker cannot read (stored before produce checked them, or
            # past a since-lowered limit): the batch's own timestamp still says
            # whether the time falls in it, and its first offset is never too late.
            _log_unreadable(partition, entry.offset, exc)
            if entry.timestamp >= timestamp:
                return max(entry.offset, start), entry.timestamp
    return -1, -1


def _log_unreadable(partition: Partition, offset: int, exc: Exception) -> None:
    logger.warning(
        "stored batch unreadable; answering at batch granularity",
        extra={"fields": {"topic": partition.topic.name, "partition": partition.index,
                          "offset": offset, "detail": str(exc)}},
    )
