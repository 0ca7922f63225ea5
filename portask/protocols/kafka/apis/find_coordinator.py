"""FindCoordinator (key 10), versions 0-4.

    v0  the coordinator of a consumer group
    v1  key types (0 group, 1 transaction); error messages
    v2  same as v1
    v3  flexible
    v4  batched keys (KIP-699)

Node 0 coordinates every group, and every transactional id while the transaction APIs
are served. With ``kafka.authorizer``, finding a coordinator needs DESCRIBE on the group
(GROUP_AUTHORIZATION_FAILED) or the transactional id
(TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

from typing import Any

from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import Operation, ResourceType, allowed
from portask.protocols.kafka.context import NODE_ID, RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE

KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION = 0, 1


@api(ApiKey.FIND_COORDINATOR, (0, 4))
def find_coordinator(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.FIND_COORDINATOR, ctx.api_version)
    key_type = getattr(request, "key_type", KEY_TYPE_GROUP)
    error, message = _coordinates(key_type)
    host, port = ctx.connection.advertised_address()

    def where(key: str) -> dict[str, Any]:
        code, text = error, message
        if code == ErrorCode.none and ctx.server.authorizer is not None:
            code = _refusal(ctx, key_type, key)
            text = None
        found = code == ErrorCode.none
        return {
            "error_code": code,
            "error_message": text,
            "node_id": NODE_ID if found else -1,
            "host": host if found else "",
            "port": port if found else -1,
        }

    if ctx.api_version >= 4:
        return registry.make(
            types.FindCoordinatorResponse,
            throttle_time=NO_THROTTLE,
            coordinators=tuple(
                registry.make(types.Coordinator, key=key, **where(key))
                for key in request.coordinator_keys
            ),
        )
    return registry.make(types.FindCoordinatorResponse, throttle_time=NO_THROTTLE,
                         **where(request.key))


def _refusal(ctx: RequestContext, key_type: int, key: str) -> ErrorCode:
    """DESCRIBE on the group or on the transactional id, as Kafka asks."""
    if key_type == KEY_TYPE_GROUP:
        ok = allowed(ctx, Operation.DESCRIBE, ResourceType.GROUP, key)
        return ErrorCode.none if ok else ErrorCode.group_authorization_failed
    ok = allowed(ctx, Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, key)
    return ErrorCode.none if ok else ErrorCode.transactional_id_authorization_failed


def _coordinates(key_type: int) -> tuple[ErrorCode, str | None]:
    if key_type == KEY_TYPE_GROUP:
        return ErrorCode.none, None
    if key_type == KEY_TYPE_TRANSACTION:
        # Only claim to coordinate transactions when the transaction APIs exist.
        if ApiKey.ADD_PARTITIONS_TO_TXN in registry.APIS:
            return ErrorCode.none, None
        return ErrorCode.invalid_request, "transactions are not served by this broker"
    return ErrorCode.invalid_request, f"unknown coordinator key type {key_type}"
