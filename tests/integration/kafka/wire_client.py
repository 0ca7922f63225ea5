"""A raw Kafka wire client for tests that must send exact bytes (bad input, pipelining).

It encodes requests with kio (a third-party codec generated from Kafka's schemas), not
with Portask's code, so the tests check the broker against an independent encoder. The
versions kio dropped with Kafka 4 (KIP-896) come from Portask's old_schemas, which are
generated from Kafka 3.7's own message definitions, not written by hand.
"""

from __future__ import annotations

import importlib
import io
import socket
import struct
from typing import Any

from kio.index import UnknownEntity, load_payload_module
from kio.schema.index import api_key_map
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType


def _entity(module: Any, entity_type: EntityType) -> type:
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "__type__", None) == entity_type:
            return value
    raise LookupError(entity_type)


def _payload_module(api_key: int, version: int, entity_type: EntityType) -> Any:
    try:
        return load_payload_module(api_key, version, entity_type)  # type: ignore[arg-type]
    except UnknownEntity:
        return importlib.import_module(
            f"portask.protocols.kafka.old_schemas.{api_key_map[api_key]}_v{version}"
        )


def request_types(api_key: int, version: int) -> Any:
    return _payload_module(api_key, version, EntityType.request)


def request_type(api_key: int, version: int) -> type:
    return _entity(request_types(api_key, version), EntityType.request)


def encode_request(request: Any, correlation_id: int, client_id: str = "wire-test") -> bytes:
    buf = io.BytesIO()
    header_type = RequestHeaderV2 if request.__flexible__ else RequestHeaderV1
    entity_writer(header_type)(
        buf,
        header_type(
            request_api_key=request.__api_key__,
            request_api_version=request.__version__,
            correlation_id=correlation_id,
            client_id=client_id,
        ),
    )
    entity_writer(type(request))(buf, request)
    body = buf.getvalue()
    return struct.pack(">i", len(body)) + body


class WireClient:
    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> bytes:
        size = struct.unpack(">i", self._exactly(4))[0]
        return self._exactly(size)

    def read_response(self, api_key: int, version: int) -> tuple[int, Any]:
        frame = self.read_frame()
        correlation_id = struct.unpack_from(">i", frame, 0)[0]
        response_type = _entity(
            _payload_module(api_key, version, EntityType.response), EntityType.response
        )
        # Flexible responses carry a tagged-field byte after the correlation id,
        # except ApiVersions, which always uses response header v0.
        offset = 5 if response_type.__flexible__ and api_key != 18 else 4
        response, _ = entity_reader(response_type)(frame, offset)
        return correlation_id, response

    def is_closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def _exactly(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self.sock.recv(n)
            if not chunk:
                raise ConnectionError("connection closed by the broker")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)
