"""The classic group protocol: JoinGroup (11), Heartbeat (12), LeaveGroup (13),
SyncGroup (14).

JoinGroup, versions 0-9:
    v0  the classic join
    v1  rebalance timeout
    v2  throttle time
    v3  same as v2
    v4  MEMBER_ID_REQUIRED for a member without an id (KIP-394)
    v5  group.instance.id (static membership, KIP-345)
    v6  flexible
    v7  protocol type in the answer
    v8  reason
    v9  skip_assignment (KIP-814)
Heartbeat, versions 0-4:
    v1  throttle time
    v2  same as v1
    v3  group.instance.id
    v4  flexible
LeaveGroup, versions 0-5:
    v1  throttle time
    v2  same as v1
    v3  batched members, by member or instance id
    v4  flexible
    v5  reason
SyncGroup, versions 0-5:
    v1  throttle time
    v2  same as v1
    v3  group.instance.id
    v4  flexible
    v5  protocol type and name

This node coordinates every group (the state machine is in broker/kafka/groups/). JoinGroup
and SyncGroup answer when the rebalance allows: their handlers return the coordinator's
future, and server.py keeps the replies of each connection in order.

With ``kafka.authorizer`` each of them needs READ on the group, else
GROUP_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable
from typing import Any

from portask.broker.kafka.groups import JoinRequest, JoinResult, SyncResult
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import Operation, ResourceType, allowed
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import GROUP_ERRORS, ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE


def _ms(value: datetime.timedelta) -> int:
    return round(value.total_seconds() * 1000)


def _client_host(ctx: RequestContext) -> str:
    peer = ctx.connection.peer
    # Kafka shows InetAddress.toString(): "/127.0.0.1".
    return f"/{peer[0]}" if isinstance(peer, tuple) and peer else ""


_REFUSED = ErrorCode.group_authorization_failed


def _group_allowed(ctx: RequestContext, group_id: str) -> bool:
    """Kafka asks for READ on the group for Join, Sync, Heartbeat and Leave."""
    return ctx.server.authorizer is None or allowed(ctx, Operation.READ, ResourceType.GROUP,
                                                    group_id)


# -- JoinGroup and SyncGroup ---------------------------------------------------------


@api(ApiKey.JOIN_GROUP, (0, 9))
def join_group(ctx: RequestContext, request: Any) -> Any:
    version = ctx.api_version
    if not _group_allowed(ctx, request.group_id):
        return _join_response(version, JoinResult(None, request.member_id), _REFUSED)
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


def _join_response(version: int, result: JoinResult, error: ErrorCode | None = None) -> Any:
    types = registry.response_types(ApiKey.JOIN_GROUP, version)
    # v7 made the protocol name nullable; before it, "no protocol" is "".
    name = (result.protocol_name or None) if version >= 7 else (result.protocol_name or "")
    return registry.make(
        types.JoinGroupResponse,
        throttle_time=NO_THROTTLE,
        error_code=GROUP_ERRORS[result.error] if error is None else error,
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


@api(ApiKey.SYNC_GROUP, (0, 5))
def sync_group(ctx: RequestContext, request: Any) -> Any:
    if not _group_allowed(ctx, request.group_id):
        return _sync_response(ctx.api_version, SyncResult(None), _REFUSED)
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


def _sync_response(version: int, result: SyncResult, error: ErrorCode | None = None) -> Any:
    types = registry.response_types(ApiKey.SYNC_GROUP, version)
    return registry.make(
        types.SyncGroupResponse,
        throttle_time=NO_THROTTLE,
        error_code=GROUP_ERRORS[result.error] if error is None else error,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
        assignment=result.assignment,
    )


# -- Heartbeat and LeaveGroup ---------------------------------------------------------


@api(ApiKey.HEARTBEAT, (0, 4))
def heartbeat(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.HEARTBEAT, ctx.api_version)
    if not _group_allowed(ctx, request.group_id):
        return registry.make(types.HeartbeatResponse, throttle_time=NO_THROTTLE,
                             error_code=_REFUSED)
    error = ctx.broker.groups.heartbeat(
        request.group_id,
        request.member_id,
        getattr(request, "group_instance_id", None),
        request.generation_id,
    )
    return registry.make(
        types.HeartbeatResponse, throttle_time=NO_THROTTLE, error_code=GROUP_ERRORS[error]
    )


@api(ApiKey.LEAVE_GROUP, (0, 5))
def leave_group(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.LEAVE_GROUP, ctx.api_version)
    if not _group_allowed(ctx, request.group_id):
        return registry.make(types.LeaveGroupResponse, throttle_time=NO_THROTTLE,
                             error_code=_REFUSED, members=())
    if ctx.api_version >= 3:
        leaving = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        leaving = [(request.member_id, None)]
    error, answers = ctx.broker.groups.leave(request.group_id, leaving)
    if ctx.api_version <= 2:
        # One member, one error: the group's, else the member's.
        first = error or next((a for a in answers if a is not None), None)
        return registry.make(
            types.LeaveGroupResponse, throttle_time=NO_THROTTLE, error_code=GROUP_ERRORS[first]
        )
    members = tuple(
        registry.make(
            types.MemberResponse,
            member_id=member_id,
            group_instance_id=instance_id,
            error_code=GROUP_ERRORS[answer],
        )
        for (member_id, instance_id), answer in zip(leaving, answers, strict=False)
    )
    return registry.make(
        types.LeaveGroupResponse,
        throttle_time=NO_THROTTLE,
        error_code=GROUP_ERRORS[error],
        members=members,
    )
