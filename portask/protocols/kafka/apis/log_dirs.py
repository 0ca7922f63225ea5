"""Log directories: AlterReplicaLogDirs (34), DescribeLogDirs (35).

AlterReplicaLogDirs, versions 0-2:
    v1  same as v0
    v2  flexible
DescribeLogDirs, versions 0-4:
    v1  same as v0
    v2  flexible
    v3  a top-level error code
    v4  total and usable bytes of each log dir's filesystem

This broker has one log directory, the one every partition's log lives in under
``server.data_dir``. DescribeLogDirs reports it with each partition's size on disk and
an offset lag of 0 (there is never a future replica to catch up). AlterReplicaLogDirs
to that directory is accepted and changes nothing; any other path is LOG_DIR_NOT_FOUND
and a partition this broker does not have is REPLICA_NOT_AVAILABLE, as Kafka answers.
"""

from __future__ import annotations

import os
from typing import Any

from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE


@api(ApiKey.ALTER_REPLICA_LOG_DIRS, (0, 2))
def alter_replica_log_dirs(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.ALTER_REPLICA_LOG_DIRS, ctx.api_version)
    topics = ctx.broker.topics
    ours = str(topics.log_dir)
    by_topic: dict[str, list[Any]] = {}
    for d in request.dirs:
        known = os.path.abspath(d.path) == ours
        for t in d.topics:
            for index in t.partitions:
                if not known:
                    error = ErrorCode.log_dir_not_found
                elif topics.partition(t.name, index) is None:
                    error = ErrorCode.replica_not_available
                else:
                    error = ErrorCode.none  # already there: nothing to move
                by_topic.setdefault(t.name, []).append(
                    registry.make(
                        types.AlterReplicaLogDirPartitionResult,
                        partition_index=index,
                        error_code=error,
                    )
                )
    return registry.make(
        types.AlterReplicaLogDirsResponse,
        throttle_time=NO_THROTTLE,
        results=tuple(
            registry.make(
                types.AlterReplicaLogDirTopicResult, topic_name=name, partitions=tuple(parts)
            )
            for name, parts in by_topic.items()
        ),
    )


@api(ApiKey.DESCRIBE_LOG_DIRS, (0, 4))
def describe_log_dirs(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.DESCRIBE_LOG_DIRS, ctx.api_version)
    topics = ctx.broker.topics
    if request.topics is None:
        wanted = [(t, [p.index for p in t.partitions]) for t in topics]
    else:
        wanted = []
        for entry in request.topics:
            found = topics.get(entry.topic)
            if found is not None:  # Kafka leaves out what this broker does not host
                wanted.append((found, list(entry.partitions)))
    described = []
    for topic, indexes in wanted:
        partitions = tuple(
            registry.make(
                types.DescribeLogDirsPartition,
                partition_index=index,
                partition_size=topic.partitions[index].log.size_bytes,
                offset_lag=0,
                is_future_key=False,
            )
            for index in indexes
            if 0 <= index < len(topic.partitions)
        )
        if partitions:
            described.append(
                registry.make(types.DescribeLogDirsTopic, name=topic.name, partitions=partitions)
            )
    space = os.statvfs(topics.log_dir)
    return registry.make(
        types.DescribeLogDirsResponse,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        results=(
            registry.make(
                types.DescribeLogDirsResult,
                error_code=ErrorCode.none,
                log_dir=str(topics.log_dir),
                topics=tuple(described),
                total_bytes=space.f_blocks * space.f_frsize,
                usable_bytes=space.f_bavail * space.f_frsize,
            ),
        ),
    )
