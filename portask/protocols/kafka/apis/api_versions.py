"""ApiVersions (key 18), versions 0-3.

    v0  the key ranges
    v1  throttle_time_ms
    v2  same as v1
    v3  flexible; the client's software name and version (KIP-511)

A request at a version above ours is answered in v0 with UNSUPPORTED_VERSION and our
ranges, so the client can retry with one we serve (server.py hands such a request over
undecoded, as None). The ranges come from the registry: only what is really
implemented. Every version answers with response header v0 (see registry.schema).
"""

from __future__ import annotations

from typing import Any

from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE

_cache: dict[tuple[int, int], list[bytes]] = {}


@api(ApiKey.API_VERSIONS, (0, 3))
def api_versions(ctx: RequestContext, request: Any) -> list[bytes]:
    supported = request is not None
    version = ctx.api_version if supported else 0
    error = ErrorCode.none if supported else ErrorCode.unsupported_version
    key = (version, int(error))
    body = _cache.get(key)
    if body is None:
        types = registry.response_types(ApiKey.API_VERSIONS, version)
        ranges = tuple(
            registry.make(
                types.ApiVersion,
                api_key=int(a.key),
                min_version=a.min_version,
                max_version=a.max_version,
            )
            for a in sorted(registry.APIS.values(), key=lambda a: a.key)
        )
        response = registry.make(
            types.ApiVersionsResponse,
            error_code=error,
            api_keys=ranges,
            throttle_time=NO_THROTTLE,
        )
        # The answer only changes with the version asked, so it is encoded once.
        body = _cache[key] = [
            registry.encode(registry.schema(ApiKey.API_VERSIONS, version), response)
        ]
    return body
