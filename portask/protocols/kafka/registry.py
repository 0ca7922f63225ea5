"""The table of Kafka APIs this broker serves, filled in by the modules under apis/.

Each API module registers its handler with the version range it really implements, so
ApiVersions is derived from what exists rather than from a hand-kept list; a key
registered twice is refused when the second module is imported. Request and response
schemas come from kio; readers and writers are built on first use and cached
(building them all up front costs seconds at start-up).
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kio.index import UnknownEntity, load_payload_module
from kio.schema.index import api_key_map
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType

from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.bounds import check_request
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.wire import MalformedRequest

# A handler answers with a kio response entity, a list of already-encoded body
# buffers (hot paths), None (no response: acks=0), or an awaitable of one of those.
Response = Any
Handler = Callable[[RequestContext, Any], Response | Awaitable[Response]]


@dataclass(frozen=True)
class Api:
    key: ApiKey
    schema: str  # kio's schema module, e.g. "produce"; also the API's label in metrics and logs
    min_version: int
    max_version: int
    handler: Handler


class DuplicateApi(RuntimeError):
    """Two handlers for one API key: a programming error, raised at import."""


APIS: dict[int, Api] = {}


def api(key: ApiKey, versions: tuple[int, int]) -> Callable[[Handler], Handler]:
    """Register the decorated handler for ``key`` at versions ``versions[0]``..``[1]``."""

    def register(handler: Handler) -> Handler:
        existing = APIS.get(key)
        if existing is not None:
            raise DuplicateApi(
                f"{key.name} ({int(key)}) is already served by "
                f"{existing.handler.__module__}.{existing.handler.__qualname__}; "
                f"{handler.__module__}.{handler.__qualname__} cannot serve it too"
            )
        # Keyed by the plain int: the key a request carries is a small int, which a dict
        # finds by identity, where an IntEnum key would cost a comparison per request.
        APIS[int(key)] = Api(key, key.name.lower(), versions[0], versions[1], handler)
        return handler

    return register


@dataclass(frozen=True)
class Schema:
    """kio's request/response types for one (api key, version), with cached codecs."""

    request_type: type
    response_type: type
    read: Callable[[bytes, int], tuple[Any, int]]
    write: Callable[[io.BytesIO, Any], None]
    request_flexible: bool
    response_flexible: bool


_SCHEMAS: dict[tuple[int, int], Schema] = {}


def _entity(module: Any, entity_type: EntityType) -> type:
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "__type__", None) == entity_type:
            return value
    raise LookupError(f"{module.__name__} has no {entity_type.name} entity")


def _payload_types(key: int, version: int) -> tuple[type, type]:
    try:
        request_module = load_payload_module(key, version, EntityType.request)
        response_module = load_payload_module(key, version, EntityType.response)
    except UnknownEntity:
        # kio follows Kafka 4, which dropped the oldest versions (KIP-896) that Kafka 3.7
        # still serves; those are generated from Kafka 3.7's definitions into old_schemas.
        request_module = response_module = importlib.import_module(
            f"portask.protocols.kafka.old_schemas.{api_key_map[key]}_v{version}"
        )
    return (
        _entity(request_module, EntityType.request),
        _entity(response_module, EntityType.response),
    )


def schema(key: int, version: int) -> Schema:
    found = _SCHEMAS.get((key, version))
    if found is None:
        request_type, response_type = _payload_types(key, version)
        found = Schema(
            request_type=request_type,
            response_type=response_type,
            read=entity_reader(request_type),
            write=entity_writer(response_type),
            request_flexible=bool(request_type.__flexible__),  # type: ignore[attr-defined]
            # ApiVersions answers with header v0 at every version so that a client can
            # always read the error code (KIP-511).
            response_flexible=bool(response_type.__flexible__) and key != ApiKey.API_VERSIONS,  # type: ignore[attr-defined]
        )
        _SCHEMAS[(key, version)] = found
    return found


def decode(s: Schema, frame: bytes | memoryview, offset: int) -> Any:
    # kio trusts the counts it reads; nothing reaches it before they are checked.
    check_request(s.request_type, frame, offset)
    try:
        request, size = s.read(frame, offset)
    except Exception as exc:  # kio raises several types for garbage; all mean the same here
        raise MalformedRequest(f"cannot decode {s.request_type.__name__}: {exc}") from None
    if offset + size > len(frame):
        raise MalformedRequest(f"{s.request_type.__name__} runs past the end of its frame")
    # Trailing bytes are ignored, as Kafka's own parser does: librdkafka sends a few
    # after some flexible requests.
    return request


def encode(s: Schema, response: Any) -> bytes:
    buf = io.BytesIO()
    s.write(buf, response)
    return buf.getvalue()


_FIELDS: dict[type, frozenset[str]] = {}


def make(entity_type: type, **values: Any) -> Any:
    """Build a kio entity from the values its version has, so handlers can serve many versions."""
    names = _FIELDS.get(entity_type)
    if names is None:
        names = _FIELDS[entity_type] = frozenset(
            f.name
            for f in dataclasses.fields(entity_type)  # type: ignore[arg-type]
        )
    return entity_type(**{k: v for k, v in values.items() if k in names})


def request_type(key: int, version: int) -> type:
    """The request entity for (key, version), from kio or old_schemas."""
    return schema(key, version).request_type


def response_types(key: int, version: int) -> Any:
    """The module holding a response's nested entity types (e.g. MetadataResponseTopic)."""
    return sys.modules[schema(key, version).response_type.__module__]
