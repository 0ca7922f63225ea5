"""CreateAcls (key 30), versions 0-3.

    v0  literal resource names only (no pattern type)
    v1  resource pattern type, LITERAL or PREFIXED (KIP-290)
    v2  flexible
    v3  user resource type (KIP-554)

Needs ALTER on the cluster. Each creation is answered on its own: an invalid one gets
INVALID_REQUEST with Kafka's reason while the others are created. Created ACLs are
durable (the definitions store). Without ``kafka.authorizer``: SECURITY_DISABLED.
"""

from __future__ import annotations

from typing import Any

from portask.broker.kafka.acls import (
    AclBinding,
    InvalidAcl,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import (
    SECURITY_DISABLED_MESSAGE,
    cluster_allowed,
    wire_enum,
)
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE


@api(ApiKey.CREATE_ACLS, (0, 3))
def create_acls(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.CREATE_ACLS, ctx.api_version)

    def result(error: ErrorCode, message: str | None = None) -> Any:
        return registry.make(types.AclCreationResult, error_code=error, error_message=message)

    if not cluster_allowed(ctx, Operation.ALTER):
        results = [result(ErrorCode.cluster_authorization_failed)] * len(request.creations)
    elif ctx.server.authorizer is None:
        results = [result(ErrorCode.security_disabled, SECURITY_DISABLED_MESSAGE)] * len(
            request.creations)
    else:
        results = []
        for c in request.creations:
            binding = AclBinding(
                wire_enum(ResourceType, c.resource_type), c.resource_name,
                wire_enum(PatternType, getattr(c, "resource_pattern_type", PatternType.LITERAL)),
                c.principal, c.host,
                wire_enum(Operation, c.operation), wire_enum(Permission, c.permission_type))
            try:
                ctx.server.acls.create(binding)
            except InvalidAcl as exc:
                results.append(result(ErrorCode.invalid_request, str(exc)))
            else:
                results.append(result(ErrorCode.none))
    return registry.make(types.CreateAclsResponse, throttle_time=NO_THROTTLE,
                         results=tuple(results))
