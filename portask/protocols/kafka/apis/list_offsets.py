"""ListOffsets (key 2) and OffsetForLeaderEpoch (key 23).

ListOffsets is served from v1 (one offset per partition, with its timestamp). v2 adds
isolation level; v3 same; v4 leader epochs; v5 same; v6 flexible; v7 max timestamp
(-3, KIP-734); v8 earliest local (-4, answered as earliest: there is no tiered storage).

OffsetForLeaderEpoch v2-v4: this node has only ever had leader epoch 0, so epoch 0 ends
at the high watermark and any later epoch is unknown.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from portask.broker.topics import Partition
from portask.protocols.kafka import records, registry
from portask.protocols.kafka.apis import transactions as txn
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.server import RequestContext

LIST_OFFSETS = 2
OFFSET_FOR_LEADER_EPOCH = 23
LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL = -1, -2, -3, -4
LEADER_EPOCH = 0

logger = logging.getLogger("portask.kafka")


@api(LIST_OFFSETS, "list_offsets", (1, 8))
def list_offsets(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(LIST_OFFSETS, ctx.api_version)
    topics = ctx.broker.topics
    results = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            partition = topics.partition(topic.name, p.partition_index)
            if partition is None:
                partitions.append(
                    registry.make(
                        types.ListOffsetsPartitionResponse,
                        partition_index=p.partition_index,
                        error_code=ErrorCode.unknown_topic_or_partition,
                        timestamp=-1,
                        offset=-1,
                        leader_epoch=-1,
                    )
                )
                continue
            offset, timestamp = _lookup(
                partition, p.timestamp, int(ctx.server.settings.kafka.max_uncompressed_batch_bytes)
            )
            if p.timestamp == LATEST and getattr(request, "isolation_level", 0) == 1:
                txn.ensure_rebuilt(ctx.server, partition)
                offset = partition.transactions.last_stable_offset(offset)
            partitions.append(
                registry.make(
                    types.ListOffsetsPartitionResponse,
                    partition_index=p.partition_index,
                    error_code=ErrorCode.none,
                    timestamp=timestamp,
                    offset=offset,
                    leader_epoch=LEADER_EPOCH if offset >= 0 else -1,
                )
            )
        results.append(
            registry.make(
                types.ListOffsetsTopicResponse, name=topic.name, partitions=tuple(partitions)
            )
        )
    return registry.make(
        types.ListOffsetsResponse, throttle_time=datetime.timedelta(0), topics=tuple(results)
    )


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
    offset = log.offset_for_timestamp(timestamp)
    # The log finds the first batch that may hold the time; the answer is the first
    # record in or after it whose own timestamp is late enough.
    while offset is not None and offset < log.end_offset:
        for entry in log.read(offset, 1 << 20):
            try:
                for delta, record_ts in records.record_timestamps(entry.payload, limit):
                    if record_ts >= timestamp and entry.offset + delta >= offset:
                        return entry.offset + delta, record_ts
            except records.InvalidBatch as exc:
                # Records the broker cannot read (stored before produce checked them, or
                # past a since-lowered limit): the batch's own timestamp still says
                # whether the time falls in it, and its first offset is never too late.
                _log_unreadable(partition, entry.offset, exc)
                if entry.timestamp >= timestamp:
                    return max(entry.offset, offset), entry.timestamp
            offset = entry.offset + entry.count
    return -1, -1


def _log_unreadable(partition: Partition, offset: int, exc: Exception) -> None:
    logger.warning(
        "stored batch unreadable; answering at batch granularity",
        extra={"fields": {"topic": partition.topic.name, "partition": partition.index,
                          "offset": offset, "detail": str(exc)}},
    )


@api(OFFSET_FOR_LEADER_EPOCH, "offset_for_leader_epoch", (2, 4))
def offset_for_leader_epoch(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(OFFSET_FOR_LEADER_EPOCH, ctx.api_version)
    topics = ctx.broker.topics
    results = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            partition = topics.partition(topic.topic, p.partition)
            if partition is None:
                error, epoch, end = ErrorCode.unknown_topic_or_partition, -1, -1
            elif p.current_leader_epoch > LEADER_EPOCH:
                error, epoch, end = ErrorCode.unknown_leader_epoch, -1, -1
            elif p.leader_epoch == LEADER_EPOCH:
                error, epoch, end = ErrorCode.none, LEADER_EPOCH, partition.high_watermark
            else:
                # An epoch this log never had: Kafka answers "undefined" without an error.
                error, epoch, end = ErrorCode.none, -1, -1
            partitions.append(
                registry.make(
                    types.EpochEndOffset,
                    error_code=error,
                    partition=p.partition,
                    leader_epoch=epoch,
                    end_offset=end,
                )
            )
        results.append(
            registry.make(
                types.OffsetForLeaderTopicResult, topic=topic.topic, partitions=tuple(partitions)
            )
        )
    return registry.make(
        types.OffsetForLeaderEpochResponse,
        throttle_time=datetime.timedelta(0),
        topics=tuple(results),
    )
