"""DeleteAcls (key 31), versions 0-3.

    v0  literal resource names only: no pattern type in the filters (LITERAL) or answer
    v1  pattern type filter, including MATCH and ANY (KIP-290)
    v2  flexible
    v3  user resource type (KIP-554)

Needs ALTER on the cluster. Each filter deletes every ACL it matches and lists them;
a filter with UNKNOWN elements gets INVALID_REQUEST. Without ``kafka.authorizer``:
SECURITY_DISABLED.
"""

from __future__ import annotations

from typing import Any

from portask.broker.kafka.acls import InvalidAcl, Operation
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.apis.describe_acls import acl_filter
from portask.protocols.kafka.authorization import SECURITY_DISABLED_MESSAGE, cluster_allowed
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE


@api(ApiKey.DELETE_ACLS, (0, 3))
def delete_acls(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.DELETE_ACLS, ctx.api_version)

    def result(error: ErrorCode, message: str | None = None,
               matching: tuple[Any, ...] = ()) -> Any:
        return registry.make(types.DeleteAclsFilterResult, error_code=error,
                             error_message=message, matching_acls=matching)

    if not cluster_allowed(ctx, Operation.ALTER):
        results = [result(ErrorCode.cluster_authorization_failed)] * len(request.filters)
    elif ctx.server.authorizer is None:
        results = [result(ErrorCode.security_disabled, SECURITY_DISABLED_MESSAGE)] * len(
            request.filters)
    else:
        results = []
        for f in request.filters:
            flt = acl_filter(f)
            try:
                flt.validate()
            except InvalidAcl as exc:
                results.append(result(ErrorCode.invalid_request, str(exc)))
                continue
            gone = ctx.server.acls.delete(flt)
            results.append(result(ErrorCode.none, None, tuple(
                registry.make(types.DeleteAclsMatchingAcl, error_code=ErrorCode.none,
                              error_message=None, resource_type=int(a.resource_type),
                              resource_name=a.resource_name, pattern_type=int(a.pattern_type),
                              principal=a.principal, host=a.host, operation=int(a.operation),
                              permission_type=int(a.permission))
                for a in gone)))
    return registry.make(types.DeleteAclsResponse, throttle_time=NO_THROTTLE,
                         filter_results=tuple(results))
