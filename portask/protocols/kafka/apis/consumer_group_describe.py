"""ConsumerGroupDescribe (key 69), versions 0-1: consumer-protocol groups (KIP-848).

    v0  group epoch, assignment epoch, assignor; per member its epoch, subscription,
        current and target assignment
    v1  member type (1: a consumer-protocol member; classic members never join a
        consumer group here)

A classic group or an unknown id is GROUP_ID_NOT_FOUND with Kafka's messages.
"""

from __future__ import annotations

from typing import Any

from portask.broker.kafka.groups.assignors import Assignment
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE, OPERATIONS_UNKNOWN

CONSUMER_MEMBER = 1
# READ, DELETE, DESCRIBE (AclOperation bits), as DescribeGroups answers.
GROUP_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)


@api(ApiKey.CONSUMER_GROUP_DESCRIBE, (0, 1))
def consumer_group_describe(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.CONSUMER_GROUP_DESCRIBE, ctx.api_version)
    groups = ctx.broker.groups
    topics = ctx.broker.topics
    operations = GROUP_OPERATIONS if request.include_authorized_operations \
        else OPERATIONS_UNKNOWN

    def assignment(a: Assignment) -> Any:
        parts = []
        for name, ps in sorted(a.items()):
            topic = topics.get(name)
            if topic is not None:
                parts.append(registry.make(types.TopicPartitions, topic_id=topic.topic_id,
                                           topic_name=name, partitions=tuple(sorted(ps))))
        return registry.make(types.Assignment, topic_partitions=tuple(parts))

    described = []
    for group_id in request.group_ids:
        group = groups.consumer.get(group_id)
        if group is None:
            classic = groups.get(group_id)
            message = (f"Group {group_id} is not a consumer group." if classic is not None
                       else f"Group {group_id} not found.")
            described.append(registry.make(
                types.DescribedGroup, error_code=ErrorCode.group_id_not_found,
                error_message=message, group_id=group_id, group_state="Dead",
                group_epoch=-1, assignment_epoch=-1, assignor_name="", members=(),
                authorized_operations=operations))
            continue
        members = tuple(
            registry.make(
                types.Member,
                member_id=m.member_id,
                instance_id=m.instance_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=m.topic_names,
                subscribed_topic_regex=m.regex,
                assignment=assignment(m.assigned),
                target_assignment=assignment(group.target.get(m.member_id, {})),
                member_type=CONSUMER_MEMBER,
            )
            for m in group.members.values()
        )
        described.append(registry.make(
            types.DescribedGroup, error_code=ErrorCode.none, group_id=group_id,
            group_state=group.state, group_epoch=group.group_epoch,
            assignment_epoch=group.assignment_epoch, assignor_name=group.assignor_name,
            members=members, authorized_operations=operations))
    return registry.make(types.ConsumerGroupDescribeResponse, throttle_time=NO_THROTTLE,
                         groups=tuple(described))
