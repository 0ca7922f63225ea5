"""DescribeCluster (key 60), versions 0-1.

    v0  the cluster id, controller and brokers (KIP-700)
    v1  endpoint type (only brokers are described: controllers are not reachable here)
"""

from __future__ import annotations

from typing import Any

from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.context import NODE_ID, RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE, OPERATIONS_UNKNOWN

ENDPOINT_TYPE_BROKERS = 1


@api(ApiKey.DESCRIBE_CLUSTER, (0, 1))
def describe_cluster(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.DESCRIBE_CLUSTER, ctx.api_version)
    host, port = ctx.connection.advertised_address()
    if getattr(request, "endpoint_type", ENDPOINT_TYPE_BROKERS) != ENDPOINT_TYPE_BROKERS:
        return registry.make(
            types.DescribeClusterResponse,
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.unsupported_endpoint_type,
            error_message="only broker endpoints are described",
            endpoint_type=request.endpoint_type,
            cluster_id=ctx.broker.cluster_id,
            controller_id=-1,
            brokers=(),
            cluster_authorized_operations=OPERATIONS_UNKNOWN,
        )
    return registry.make(
        types.DescribeClusterResponse,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        endpoint_type=ENDPOINT_TYPE_BROKERS,
        cluster_id=ctx.broker.cluster_id,
        controller_id=NODE_ID,
        brokers=(
            registry.make(
                types.DescribeClusterBroker, broker_id=NODE_ID, host=host, port=port, rack=None
            ),
        ),
        cluster_authorized_operations=OPERATIONS_UNKNOWN,
    )
