"""ApiVersions (key 18).

v0 base; v1 adds throttle_time_ms; v2 same as v1; v3 is flexible and carries the
client's software name and version (KIP-511). A request at a version above ours is
answered in v0 with UNSUPPORTED_VERSION and our ranges, so the client can retry with
one we serve. The ranges come from the registry: only what is really implemented.
"""

from __future__ import annotations

import datetime
from typing import Any

from portask.protocols.kafka import registry
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.server import RequestContext

KEY = registry.API_VERSIONS_KEY
_cache: dict[tuple[int, int], list[bytes]] = {}


@api(KEY, "api_versions", (0, 3))
def handle(ctx: RequestContext, request: Any) -> list[bytes]:
    supported = request is not None
    version = ctx.api_version if supported else 0
    error = ErrorCode.none if supported else ErrorCode.unsupported_version
    key = (version, int(error))
    body = _cache.get(key)
    if body is None:
        types = registry.response_types(KEY, version)
        ranges = tuple(
            registry.make(
                types.ApiVersion,
                api_key=a.key,
                min_version=a.min_version,
                max_version=a.max_version,
            )
            for a in sorted(registry.APIS.values(), key=lambda a: a.key)
        )
        response = registry.make(
            types.ApiVersionsResponse,
            error_code=error,
            api_keys=ranges,
            throttle_time=datetime.timedelta(0),
        )
        # The answer only changes with the version asked, so it is encoded once.
        body = _cache[key] = [registry.encode(registry.schema(KEY, version), response)]
    return body
