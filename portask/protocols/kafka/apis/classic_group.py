"""Group coordination: FindCoordinator (10), JoinGroup (11), Heartbeat (12), LeaveGroup (13),
SyncGroup (14), DescribeGroups (15), ListGroups (16), DeleteGroups (42).

Versions as Kafka 3.7 serves them:
FindCoordinator v0-v4: v1 key types (0 group, 1 transaction) and error messages; v2
same; v3 flexible; v4 batched keys (KIP-699).
JoinGroup v0-v9: v1 rebalance timeout; v2 throttle time; v3 same; v4 MEMBER_ID_REQUIRED
for a member without an id (KIP-394); v5 group.instance.id (KIP-345); v6 flexible; v7
protocol type in the answer; v8 reason; v9 skip_assignment (KIP-814).
Heartbeat v0-v4: v1 throttle time; v2 same; v3 group.instance.id; v4 flexible.
LeaveGroup v0-v5: v1 throttle time; v2 same; v3 batched members by member or instance
id; v4 flexible; v5 reason.
SyncGroup v0-v5: v1 throttle time; v2 same; v3 group.instance.id; v4 flexible; v5
protocol type and name.
DescribeGroups v0-v5: v1 throttle time; v2 same; v3 authorized operations; v4
group.instance.id; v5 flexible.
ListGroups v0-v4: v1 throttle time; v2 same; v3 flexible; v4 states filter (KIP-518).
DeleteGroups v0-v2: v1 same; v2 flexible.

This node coordinates every group (the state machine is in broker/groups.py). JoinGroup
and SyncGroup answer when the rebalance allows: their handlers return the coordinator's
future, and server.py keeps the replies of each connection in order.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable
from typing import Any

from portask.broker.groups import (
    STABLE,
    GroupError,
    JoinRequest,
    JoinResult,
    SyncResult,
)
from portask.protocols.kafka import registry
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.server import NODE_ID, RequestContext

FIND_COORDINATOR, JOIN_GROUP, HEARTBEAT, LEAVE_GROUP, SYNC_GROUP = 10, 11, 12, 13, 14
DESCRIBE_GROUPS, LIST_GROUPS, DELETE_GROUPS = 15, 16, 42
ADD_PARTITIONS_TO_TXN = 24
KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION = 0, 1
_NO_THROTTLE = datetime.timedelta(0)
# Kafka's "not requested" sentinel for authorized operations, and the group operations
# (READ, DELETE, DESCRIBE as AclOperation bits) every client may do here: no ACLs yet.
OPERATIONS_UNKNOWN = -2147483648
GROUP_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)

ERRORS: dict[GroupError | None, ErrorCode] = {
    None: ErrorCode.none,
    GroupError.INVALID_GROUP_ID: ErrorCode.invalid_group_id,
    GroupError.COORDINATOR_NOT_AVAILABLE: ErrorCode.coordinator_not_available,
    GroupError.INVALID_SESSION_TIMEOUT: ErrorCode.invalid_session_timeout,
    GroupError.UNKNOWN_MEMBER: ErrorCode.unknown_member_id,
    GroupError.MEMBER_ID_REQUIRED: ErrorCode.member_id_required,
    GroupError.ILLEGAL_GENERATION: ErrorCode.illegal_generation,
    GroupError.REBALANCE_IN_PROGRESS: ErrorCode.rebalance_in_progress,
    GroupError.INCONSISTENT_PROTOCOL: ErrorCode.inconsistent_group_protocol,
    GroupError.FENCED_INSTANCE: ErrorCode.fenced_instance_id,
    GroupError.GROUP_NOT_FOUND: ErrorCode.group_id_not_found,
    GroupError.NON_EMPTY_GROUP: ErrorCode.non_empty_group,
    GroupError.SUBSCRIBED_TO_TOPIC: ErrorCode.group_subscribed_to_topic,
}


def _ms(value: datetime.timedelta) -> int:
    return round(value.total_seconds() * 1000)


def _client_host(ctx: RequestContext) -> str:
    peer = ctx.connection.peer
    # Kafka shows InetAddress.toString(): "/127.0.0.1".
    return f"/{peer[0]}" if isinstance(peer, tuple) and peer else ""


# -- FindCoordinator ---------------------------------------------------------------


@api(FIND_COORDINATOR, "find_coordinator", (0, 4))
def find_coordinator(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(FIND_COORDINATOR, ctx.api_version)
    key_type = getattr(request, "key_type", KEY_TYPE_GROUP)
    error, message = _coordinates(key_type)
    host, port = ctx.server.advertised_address(ctx.connection.local)
    found = error == ErrorCode.none
    where = {
        "error_code": error,
        "error_message": message,
        "node_id": NODE_ID if found else -1,
        "host": host if found else "",
        "port": port if found else -1,
    }
    if ctx.api_version >= 4:
        return registry.make(
            types.FindCoordinatorResponse,
            throttle_time=_NO_THROTTLE,
            coordinators=tuple(
                registry.make(types.Coordinator, key=key, **where)
                for key in request.coordinator_keys
            ),
        )
    return registry.make(types.FindCoordinatorResponse, throttle_time=_NO_THROTTLE, **where)


def _coordinates(key_type: int) -> tuple[ErrorCode, str | None]:
    if key_type == KEY_TYPE_GROUP:
        return ErrorCode.none, None
    if key_type == KEY_TYPE_TRANSACTION:
        # Only claim to coordinate transactions when the transaction APIs exist.
        if ADD_PARTITIONS_TO_TXN in registry.APIS:
            return ErrorCode.none, None
        return ErrorCode.invalid_request, "transactions are not served by this broker"
    return ErrorCode.invalid_request, f"unknown coordinator key type {key_type}"


# -- JoinGroup and SyncGroup ---------------------------------------------------------


@api(JOIN_GROUP, "join_group", (0, 9))
def join_group(ctx: RequestContext, request: Any) -> Any:
    version = ctx.api_version
    instance_id = getattr(request, "group_instance_id", None)
    session_ms = _ms(request.session_timeout)
    join = JoinRequest(
        member_id=request.member_id,
        instance_id=instance_id,
        client_id=ctx.client_id or "",
        client_host=_client_host(ctx),
        session_timeout_ms=session_ms,
        # v0 has no rebalance timeout: Kafka uses the session timeout for it.
        rebalance_timeout_ms=_ms(request.rebalance_timeout) if version >= 1 else session_ms,
        protocol_type=request.protocol_type,
        protocols=[(p.name, bytes(p.metadata)) for p in request.protocols],
        require_known_member_id=version >= 4 and instance_id is None,
        supports_skip_assignment=version >= 9,
        reason=getattr(request, "reason", None),
    )
    waiter = ctx.broker.groups.join(request.group_id, join)
    if waiter.done():
        return _join_response(version, waiter.result())
    return _join_later(version, waiter)


async def _join_later(version: int, waiter: Awaitable[JoinResult]) -> Any:
    return _join_response(version, await waiter)


def _join_response(version: int, result: JoinResult) -> Any:
    types = registry.response_types(JOIN_GROUP, version)
    # v7 made the protocol name nullable; before it, "no protocol" is "".
    name = (result.protocol_name or None) if version >= 7 else (result.protocol_name or "")
    return registry.make(
        types.JoinGroupResponse,
        throttle_time=_NO_THROTTLE,
        error_code=ERRORS[result.error],
        generation_id=result.generation,
        protocol_type=result.protocol_type,
        protocol_name=name,
        leader=result.leader,
        skip_assignment=result.skip_assignment,
        member_id=result.member_id,
        members=tuple(
            registry.make(
                types.JoinGroupResponseMember,
                member_id=m.member_id,
                group_instance_id=m.instance_id,
                metadata=m.metadata,
            )
            for m in result.members
        ),
    )


@api(SYNC_GROUP, "sync_group", (0, 5))
def sync_group(ctx: RequestContext, request: Any) -> Any:
    waiter = ctx.broker.groups.sync(
        request.group_id,
        request.generation_id,
        request.member_id,
        getattr(request, "group_instance_id", None),
        getattr(request, "protocol_type", None),
        getattr(request, "protocol_name", None),
        {a.member_id: bytes(a.assignment) for a in request.assignments},
    )
    if waiter.done():
        return _sync_response(ctx.api_version, waiter.result())
    return _sync_later(ctx.api_version, waiter)


async def _sync_later(version: int, waiter: Awaitable[SyncResult]) -> Any:
    return _sync_response(version, await waiter)


def _sync_response(version: int, result: SyncResult) -> Any:
    types = registry.response_types(SYNC_GROUP, version)
    return registry.make(
        types.SyncGroupResponse,
        throttle_time=_NO_THROTTLE,
        error_code=ERRORS[result.error],
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
        assignment=result.assignment,
    )


# -- Heartbeat and LeaveGroup ---------------------------------------------------------


@api(HEARTBEAT, "heartbeat", (0, 4))
def heartbeat(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(HEARTBEAT, ctx.api_version)
    error = ctx.broker.groups.heartbeat(
        request.group_id,
        request.member_id,
        getattr(request, "group_instance_id", None),
        request.generation_id,
    )
    return registry.make(
        types.HeartbeatResponse, throttle_time=_NO_THROTTLE, error_code=ERRORS[error]
    )


@api(LEAVE_GROUP, "leave_group", (0, 5))
def leave_group(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(LEAVE_GROUP, ctx.api_version)
    if ctx.api_version >= 3:
        leaving = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        leaving = [(request.member_id, None)]
    error, answers = ctx.broker.groups.leave(request.group_id, leaving)
    if ctx.api_version <= 2:
        # One member, one error: the group's, else the member's.
        first = error or next((a for a in answers if a is not None), None)
        return registry.make(
            types.LeaveGroupResponse, throttle_time=_NO_THROTTLE, error_code=ERRORS[first]
        )
    members = tuple(
        registry.make(
            types.MemberResponse,
            member_id=member_id,
            group_instance_id=instance_id,
            error_code=ERRORS[answer],
        )
        for (member_id, instance_id), answer in zip(leaving, answers, strict=False)
    )
    return registry.make(
        types.LeaveGroupResponse,
        throttle_time=_NO_THROTTLE,
        error_code=ERRORS[error],
        members=members,
    )


# -- DescribeGroups, ListGroups, DeleteGroups -----------------------------------------


@api(DESCRIBE_GROUPS, "describe_groups", (0, 5))
def describe_groups(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(DESCRIBE_GROUPS, ctx.api_version)
    operations = (
        GROUP_OPERATIONS
        if getattr(request, "include_authorized_operations", False)
        else OPERATIONS_UNKNOWN
    )
    described = []
    for group_id in request.groups:
        group = ctx.broker.groups.get(group_id)
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
        types.DescribeGroupsResponse, throttle_time=_NO_THROTTLE, groups=tuple(described)
    )


@api(LIST_GROUPS, "list_groups", (0, 4))
def list_groups(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(LIST_GROUPS, ctx.api_version)
    # State names match case-insensitively, as in Kafka.
    states = {s.lower() for s in getattr(request, "states_filter", ())}
    listed = tuple(
        registry.make(
            types.ListedGroup,
            group_id=g.group_id,
            protocol_type=g.protocol_type or "",
            group_state=g.state.value,
        )
        for g in ctx.broker.groups
        if not states or g.state.value.lower() in states
    )
    return registry.make(
        types.ListGroupsResponse,
        throttle_time=_NO_THROTTLE,
        error_code=ErrorCode.none,
        groups=listed,
    )


@api(DELETE_GROUPS, "delete_groups", (0, 2))
def delete_groups(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(DELETE_GROUPS, ctx.api_version)
    results = ctx.broker.groups.delete(request.groups_names)
    return registry.make(
        types.DeleteGroupsResponse,
        throttle_time=_NO_THROTTLE,
        results=tuple(
            registry.make(
                types.DeletableGroupResult, group_id=group_id, error_code=ERRORS[error]
            )
            for group_id, error in results.items()
        ),
    )
