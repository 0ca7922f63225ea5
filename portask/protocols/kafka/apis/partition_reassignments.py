"""Partition reassignments: AlterPartitionReassignments (45), ListPartitionReassignments (46).

AlterPartitionReassignments, version 0 (KIP-455; flexible from the start)
ListPartitionReassignments, version 0 (KIP-455; flexible from the start)

A one-node cluster has nowhere to move a replica. Reassigning a partition to ``[0]``,
where it already is, is accepted and changes nothing; any other replica list gets the
per-partition INVALID_REPLICA_ASSIGNMENT Kafka's controller gives it (an empty list,
a broker that is not registered, a broker named twice), cancelling (null replicas)
gets NO_REASSIGNMENT_IN_PROGRESS, and an unknown partition UNKNOWN_TOPIC_OR_PARTITION.
So no reassignment is ever in progress, which is what ListPartitionReassignments says.
"""

from __future__ import annotations

from typing import Any

from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.context import NODE_ID, RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE

# Kafka's Errors.NO_REASSIGNMENT_IN_PROGRESS message.
_NOTHING_TO_CANCEL = "No partition reassignment is in progress."


@api(ApiKey.ALTER_PARTITION_REASSIGNMENTS, (0, 0))
def alter_partition_reassignments(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.ALTER_PARTITION_REASSIGNMENTS, ctx.api_version)
    topics = ctx.broker.topics

    def answer(name: str, p: Any) -> Any:
        error, message = _refusal(topics, name, p.partition_index, p.replicas)
        return registry.make(
            types.ReassignablePartitionResponse,
            partition_index=p.partition_index,
            error_code=error,
            error_message=message,
        )

    return registry.make(
        types.AlterPartitionReassignmentsResponse,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        responses=tuple(
            registry.make(
                types.ReassignableTopicResponse,
                name=t.name,
                partitions=tuple(answer(t.name, p) for p in t.partitions),
            )
            for t in request.topics
        ),
    )


def _refusal(
    topics: Any, name: str, index: int, replicas: tuple[int, ...] | None
) -> tuple[ErrorCode, str | None]:
    """Kafka's ReplicationControlManager checks, in its order, with its messages."""
    if topics.get(name) is None:
        return ErrorCode.unknown_topic_or_partition, f"Unable to find a topic named {name}."
    if topics.partition(name, index) is None:
        return (
            ErrorCode.unknown_topic_or_partition,
            f"Unable to find partition {name}:{index}.",
        )
    if replicas is None:
        return ErrorCode.no_reassignment_in_progress, _NOTHING_TO_CANCEL
    if not replicas:
        return (
            ErrorCode.invalid_replica_assignment,
            "The manual partition assignment includes an empty replica list.",
        )
    previous = None
    for broker in sorted(replicas):
        if broker != NODE_ID:
            return (
                ErrorCode.invalid_replica_assignment,
                f"The manual partition assignment includes broker {broker}, but no such "
                "broker is registered.",
            )
        if broker == previous:
            return (
                ErrorCode.invalid_replica_assignment,
                f"The manual partition assignment includes the broker {broker} more than "
                "once.",
            )
        previous = broker
    return ErrorCode.none, None


@api(ApiKey.LIST_PARTITION_REASSIGNMENTS, (0, 0))
def list_partition_reassignments(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.LIST_PARTITION_REASSIGNMENTS, ctx.api_version)
    return registry.make(
        types.ListPartitionReassignmentsResponse,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        topics=(),
    )
