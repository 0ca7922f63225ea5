"""DescribeAcls (key 29), versions 0-3.

    v0  literal resource names only: no pattern type in the filter (LITERAL) or the answer
    v1  pattern type filter: LITERAL, PREFIXED, ANY or MATCH (KIP-290)
    v2  flexible
    v3  user resource type allowed in filters (KIP-554)

Needs DESCRIBE on the cluster. Without ``kafka.authorizer`` the answer is
SECURITY_DISABLED, as from a Kafka broker with no authorizer configured.
"""

from __future__ import annotations

from typing import Any

from portask.broker.kafka.acls import (
    AclBinding,
    AclFilter,
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


def acl_filter(f: Any) -> AclFilter:
    """A DescribeAcls request or a DeleteAcls filter as the broker's AclFilter."""
    return AclFilter(
        resource_type=wire_enum(ResourceType, f.resource_type_filter),
        resource_name=f.resource_name_filter,
        # v0 has no pattern type: its filters are LITERAL.
        pattern_type=wire_enum(PatternType, getattr(f, "pattern_type_filter",
                                                    PatternType.LITERAL)),
        principal=f.principal_filter,
        host=f.host_filter,
        operation=wire_enum(Operation, f.operation),
        permission=wire_enum(Permission, f.permission_type),
    )


@api(ApiKey.DESCRIBE_ACLS, (0, 3))
def describe_acls(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.DESCRIBE_ACLS, ctx.api_version)

    def answer(error: ErrorCode, message: str | None = None,
               resources: tuple[Any, ...] = ()) -> Any:
        return registry.make(types.DescribeAclsResponse, throttle_time=NO_THROTTLE,
                             error_code=error, error_message=message, resources=resources)

    if not cluster_allowed(ctx, Operation.DESCRIBE):
        return answer(ErrorCode.cluster_authorization_failed)
    if ctx.server.authorizer is None:
        return answer(ErrorCode.security_disabled, SECURITY_DISABLED_MESSAGE)
    flt = acl_filter(request)
    try:
        flt.validate()
    except InvalidAcl as exc:
        return answer(ErrorCode.invalid_request, str(exc))
    grouped: dict[tuple[int, str, int], list[AclBinding]] = {}
    for acl in ctx.server.acls.describe(flt):
        key = (int(acl.resource_type), acl.resource_name, int(acl.pattern_type))
        grouped.setdefault(key, []).append(acl)
    resources = tuple(
        registry.make(
            types.DescribeAclsResource, resource_type=rt, resource_name=name, pattern_type=pt,
            acls=tuple(
                registry.make(types.AclDescription, principal=a.principal, host=a.host,
                              operation=int(a.operation), permission_type=int(a.permission))
                for a in acls),
        )
        for (rt, name, pt), acls in grouped.items()
    )
    return answer(ErrorCode.none, None, resources)
