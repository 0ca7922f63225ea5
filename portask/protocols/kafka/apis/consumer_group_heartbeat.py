"""ConsumerGroupHeartbeat (key 68), versions 0-1: Kafka 4's consumer group protocol
(KIP-848).

    v0  the heartbeat of a consumer-protocol group member: subscription, owned
        partitions and member epoch in, target-driven assignment out; the coordinator
        names a member that comes without an id
    v1  the member names itself (KIP-1082: an empty member id is INVALID_REQUEST);
        subscribed_topic_regex resolved by the coordinator (KIP-848's regex part)

Topics travel by id; an owned partition of a topic this broker does not know is
dropped, as Kafka ignores it. The state machine and the assignors are in
broker/kafka/groups/consumer.py and assignors.py.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from portask.broker.kafka.groups.assignors import Assignment
from portask.broker.kafka.groups.consumer import ConsumerHeartbeat
from portask.broker.kafka.topics import Topics
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import GROUP_ERRORS
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE


def _client_host(ctx: RequestContext) -> str:
    peer = ctx.connection.peer
    # Kafka shows InetAddress.toString(): "/127.0.0.1".
    return f"/{peer[0]}" if isinstance(peer, tuple) and peer else ""


def _owned(topics: Topics, owned: Any) -> Assignment | None:
    if owned is None:
        return None
    by_name: dict[str, set[int]] = {}
    for tp in owned:
        topic = topics.by_id(tp.topic_id) if tp.topic_id is not None else None
        if topic is not None and tp.partitions:
            by_name.setdefault(topic.name, set()).update(int(p) for p in tp.partitions)
    return {name: frozenset(ps) for name, ps in by_name.items()}


@api(ApiKey.CONSUMER_GROUP_HEARTBEAT, (0, 1))
def consumer_group_heartbeat(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.CONSUMER_GROUP_HEARTBEAT, ctx.api_version)
    topics = ctx.broker.topics
    names = request.subscribed_topic_names
    hb = ConsumerHeartbeat(
        member_id=request.member_id,
        member_epoch=request.member_epoch,
        instance_id=request.instance_id,
        rack_id=request.rack_id,
        rebalance_timeout_ms=round(request.rebalance_timeout.total_seconds() * 1000),
        subscribed_topic_names=tuple(names) if names is not None else None,
        # v0 carries the field but Kafka 4.0 only honours it from v1 on.
        subscribed_topic_regex=request.subscribed_topic_regex if ctx.api_version >= 1
        else None,
        server_assignor=request.server_assignor,
        owned=_owned(topics, request.topic_partitions),
        client_id=ctx.client_id or "",
        client_host=_client_host(ctx),
        generate_member_id=ctx.api_version == 0,
    )
    result = ctx.broker.groups.consumer_heartbeat(request.group_id, hb)
    assignment = None
    if result.assignment is not None:
        assignment = registry.make(
            types.Assignment,
            topic_partitions=tuple(
                registry.make(types.TopicPartitions, topic_id=_topic_id(topics, name),
                              partitions=tuple(sorted(ps)))
                for name, ps in sorted(result.assignment.items())
                if topics.get(name) is not None
            ),
        )
    return registry.make(
        types.ConsumerGroupHeartbeatResponse,
        throttle_time=NO_THROTTLE,
        error_code=GROUP_ERRORS[result.error],
        error_message=result.message,
        member_id=result.member_id or None,
        member_epoch=result.member_epoch,
        heartbeat_interval=datetime.timedelta(milliseconds=result.heartbeat_interval_ms),
        assignment=assignment,
    )


def _topic_id(topics: Topics, name: str) -> uuid.UUID:
    topic = topics.get(name)
    assert topic is not None
    return topic.topic_id
