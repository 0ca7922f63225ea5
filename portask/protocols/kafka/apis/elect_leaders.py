"""ElectLeaders (key 43), versions 0-2.

    v0  preferred-leader election for the partitions named (KIP-183)
    v1  election type (preferred or unclean, KIP-460); a top-level error code
    v2  flexible

Node 0 leads every partition and is its only replica, so no election is ever needed:
each partition named is answered ELECTION_NOT_NEEDED and an unknown one
UNKNOWN_TOPIC_OR_PARTITION, with Kafka's messages. A request naming no partitions
(null) means every partition, and, as in Kafka, partitions that needed no election are
left out of that answer.
"""

from __future__ import annotations

from typing import Any

from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE

PREFERRED, UNCLEAN = 0, 1
# Kafka's Errors.ELECTION_NOT_NEEDED message, which its controller answers with.
_NOT_NEEDED = "Leader election not needed for topic partition."


@api(ApiKey.ELECT_LEADERS, (0, 2))
def elect_leaders(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.ELECT_LEADERS, ctx.api_version)
    election = getattr(request, "election_type", PREFERRED)
    if election not in (PREFERRED, UNCLEAN):
        return registry.make(
            types.ElectLeadersResponse,
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.invalid_request,
            replica_election_results=(),
        )
    topics = ctx.broker.topics
    if request.topic_partitions is None:
        # Every partition already has its preferred leader: none is listed.
        results = tuple(
            registry.make(types.ReplicaElectionResult, topic=t.name, partition_result=())
            for t in topics
        )
    else:
        results = tuple(
            registry.make(
                types.ReplicaElectionResult,
                topic=entry.topic,
                partition_result=tuple(
                    _result(types, topics, entry.topic, index) for index in entry.partitions
                ),
            )
            for entry in request.topic_partitions
        )
    return registry.make(
        types.ElectLeadersResponse,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        replica_election_results=results,
    )


def _result(types: Any, topics: Any, name: str, index: int) -> Any:
    if topics.get(name) is None:
        error, message = ErrorCode.unknown_topic_or_partition, f"No such topic as {name}"
    elif topics.partition(name, index) is None:
        error = ErrorCode.unknown_topic_or_partition
        message = f"No such partition as {name}-{index}"
    else:
        error, message = ErrorCode.election_not_needed, _NOT_NEEDED
    return registry.make(
        types.PartitionResult, partition_id=index, error_code=error, error_message=message
    )
