"""Group administration: DescribeGroups (15), ListGroups (16), DeleteGroups (42).

DescribeGroups, versions 0-5:
    v1  throttle time
    v2  same as v1
    v3  authorized operations (KIP-430)
    v4  group.instance.id of members
    v5  flexible
ListGroups, versions 0-5:
    v1  throttle time
    v2  same as v1
    v3  flexible
    v4  states filter (KIP-518)
    v5  types filter and group type (KIP-848: "classic" or "consumer")
DeleteGroups, versions 0-2:
    v1  same as v0
    v2  flexible

An unknown group is described as Dead (as Kafka does before DescribeGroups v6), and so
is a consumer-protocol group (ConsumerGroupDescribe describes those); only empty groups
can be deleted. ListGroups lists both kinds.

With ``kafka.authorizer``: DESCRIBE on a group to describe it and DELETE to delete it
(else GROUP_AUTHORIZATION_FAILED); ListGroups lists every group with DESCRIBE on the
cluster, else only the groups the principal may DESCRIBE.
"""

from __future__ import annotations

from typing import Any

from portask.broker.kafka.groups import STABLE
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import (
    Operation,
    ResourceType,
    allowed,
    cluster_allowed,
)
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import GROUP_ERRORS, ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE, OPERATIONS_UNKNOWN

# The group operations (READ, DELETE, DESCRIBE as AclOperation bits) reported to clients
# that ask (KIP-430); not computed from the ACLs.
GROUP_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)


@api(ApiKey.DESCRIBE_GROUPS, (0, 5))
def describe_groups(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.DESCRIBE_GROUPS, ctx.api_version)
    operations = (
        GROUP_OPERATIONS
        if getattr(request, "include_authorized_operations", False)
        else OPERATIONS_UNKNOWN
    )
    described = []
    for group_id in request.groups:
        group = ctx.broker.groups.get(group_id)
        if not _allowed(ctx, Operation.DESCRIBE, group_id):
            described.append(
                registry.make(
                    types.DescribedGroup, error_code=ErrorCode.group_authorization_failed,
                    group_id=group_id, group_state="", protocol_type="", protocol_data="",
                    members=(), authorized_operations=operations,
                )
            )
            continue
        if group is None:
            # Kafka (before DescribeGroups v6) describes an unknown group as Dead.
            described.append(
                registry.make(
                    types.DescribedGroup, error_code=ErrorCode.none, group_id=group_id,
                    group_state="Dead", protocol_type="", protocol_data="", members=(),
                    authorized_operations=operations,
                )
            )
            continue
        # Metadata and assignments are only meaningful once the group is stable.
        stable = group.state is STABLE
        members = tuple(
            registry.make(
                types.DescribedGroupMember,
                member_id=m.member_id,
                group_instance_id=m.instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_metadata=m.metadata(group.protocol_name) if stable else b"",
                member_assignment=m.assignment if stable else b"",
            )
            for m in group.members.values()
        )
        described.append(
            registry.make(
                types.DescribedGroup,
                error_code=ErrorCode.none,
                group_id=group_id,
                group_state=group.state.value,
                protocol_type=group.protocol_type or "",
                protocol_data=(group.protocol_name or "") if stable else "",
                members=members,
                authorized_operations=operations,
            )
        )
    return registry.make(
        types.DescribeGroupsResponse, throttle_time=NO_THROTTLE, groups=tuple(described)
    )


@api(ApiKey.LIST_GROUPS, (0, 5))
def list_groups(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.LIST_GROUPS, ctx.api_version)
    # State names match case-insensitively, as in Kafka.
    states = {s.lower() for s in getattr(request, "states_filter", ())}
    kinds = {t.lower() for t in getattr(request, "types_filter", ())}
    # DESCRIBE on the cluster lists every group; without it, those it may DESCRIBE.
    all_allowed = ctx.server.authorizer is None or cluster_allowed(ctx, Operation.DESCRIBE)
    every = [(g.group_id, g.protocol_type or "", g.state.value, "classic")
             for g in ctx.broker.groups]
    every += [(g.group_id, "consumer", g.state, "consumer") for g in ctx.broker.groups.consumer]
    listed = tuple(
        registry.make(
            types.ListedGroup,
            group_id=group_id,
            protocol_type=protocol_type,
            group_state=state,
            group_type=kind,
        )
        for group_id, protocol_type, state, kind in every
        if (not states or state.lower() in states) and (not kinds or kind in kinds)
        and (all_allowed or _allowed(ctx, Operation.DESCRIBE, group_id))
    )
    return registry.make(
        types.ListGroupsResponse,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        groups=listed,
    )


@api(ApiKey.DELETE_GROUPS, (0, 2))
def delete_groups(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.DELETE_GROUPS, ctx.api_version)
    names = request.groups_names
    permitted = [g for g in names if _allowed(ctx, Operation.DELETE, g)]
    deleted = ctx.broker.groups.delete(permitted)
    results = {g: GROUP_ERRORS[deleted[g]] if g in deleted
               else ErrorCode.group_authorization_failed for g in names}
    return registry.make(
        types.DeleteGroupsResponse,
        throttle_time=NO_THROTTLE,
        results=tuple(
            registry.make(types.DeletableGroupResult, group_id=group_id, error_code=error)
            for group_id, error in results.items()
        ),
    )


def _allowed(ctx: RequestContext, operation: Operation, group_id: str) -> bool:
    return ctx.server.authorizer is None or allowed(ctx, operation, ResourceType.GROUP,
                                                    group_id)
