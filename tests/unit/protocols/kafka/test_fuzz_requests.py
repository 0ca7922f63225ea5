"""Fuzz targets: Kafka request framing, the request header, and every served request body.

Inputs are valid requests (kio's own writer encodes them, independently of Portask's
decoder) put through tests/mutation.py. What the server does with a frame is what
these targets do: parse_request_header, then registry.decode. The only exception
allowed out is MalformedRequest, on which the server closes the connection with one
warning line; anything else would be a traceback and a bug. What decodes must be a
request of the right type, and allocation must stay linear in the bytes received.
"""

from __future__ import annotations

import functools
import struct

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from portask.protocols.kafka import (
    apis,  # noqa: F401  (registers every API)
    registry,
)
from portask.protocols.kafka.wire import MalformedRequest, parse_request_header
from tests.allocation import bounded, warm
from tests.integration.kafka.wire_client import encode_request
from tests.mutation import fuzz_settings, mutated
from tests.unit.protocols.kafka.kio_values import encode_body, sample

pytestmark = pytest.mark.fuzz

SERVED = sorted(
    (api.key, version)
    for api in registry.APIS.values()
    for version in range(api.min_version, api.max_version + 1)
)
_HEADER = struct.Struct(">hhi")
_CLIENT_IDS = ("", "wire-test", "rdkafka", "x" * 300, "ünïcode")


def _frame(key: int, version: int, correlation_id: int, client_id: str) -> bytes:
    """A request as the server sees it: header and body, without the size prefix."""
    request = sample(registry.schema(key, version).request_type)
    return encode_request(request, correlation_id, client_id)[4:]




@functools.cache
def _bodies() -> dict[tuple[int, int], bytes]:
    # Built on first draw, not at import: building every schema's reader takes a second.
    return {pair: encode_body(sample(registry.schema(*pair).request_type)) for pair in SERVED}


@functools.cache
def _donors() -> tuple[bytes, ...]:
    return tuple(_bodies().values())


@st.composite
def _served_frames(draw: st.DrawFn) -> tuple[int, int, bytes]:
    key, version = draw(st.sampled_from(SERVED))
    return key, version, _frame(key, version, draw(st.integers(0, 2**31 - 1)),
                                draw(st.sampled_from(_CLIENT_IDS)))


@fuzz_settings()
@given(pair=_served_frames().flatmap(
    lambda kvf: st.tuples(st.just(kvf), mutated(st.just(kvf[2]), _donors()))))
def test_request_header_parses_or_is_refused_as_malformed(
    pair: tuple[tuple[int, int, bytes], tuple[bytes, bytes]],
) -> None:
    (key, version, _), (original, frame) = pair
    flexible = registry.schema(key, version).request_flexible
    parsed, error = bounded(parse_request_header, (frame, flexible), len(frame),
                            "parse_request_header", native=False)
    event("refused" if error is not None else "parsed")
    if error is not None:
        assert type(error) is MalformedRequest, repr(error)
        assert frame != original, f"a valid header was refused: {error}"
        return
    api_key, api_version, correlation_id, client_id, body_at = parsed
    assert (api_key, api_version, correlation_id) == _HEADER.unpack_from(frame)
    assert _HEADER.size + 2 <= body_at <= len(frame)
    client_length = struct.unpack_from(">h", frame, _HEADER.size)[0]
    start = _HEADER.size + 2
    assert client_id == (None if client_length < 0 else
                         frame[start : start + client_length].decode("utf-8", "replace"))
    if frame == original:
        assert body_at == len(frame) - len(_bodies()[(key, version)])


@st.composite
def _requests(draw: st.DrawFn) -> tuple[int, int, bytes, bytes]:
    """(key, version, valid frame, mutated frame): mostly the body mutated behind a valid
    header (that is where the counts are), sometimes the whole frame."""
    key, version = draw(st.sampled_from(SERVED))
    frame = _frame(key, version, 7, "fuzz")
    body = _bodies()[(key, version)]
    head = frame[: len(frame) - len(body)]
    if draw(st.integers(0, 3)):
        _, mutated_body = draw(mutated(st.just(body), _donors()))
        return key, version, frame, head + mutated_body
    _, mutated_frame = draw(mutated(st.just(frame), _donors()))
    return key, version, frame, mutated_frame


def _server_decode(key: int, version: int, frame: bytes) -> object:
    # The server's own sequence (KafkaConnection._handle), without the socket.
    schema = registry.schema(key, version)
    *_, body_at = parse_request_header(frame, schema.request_flexible)
    return registry.decode(schema, frame, body_at)


@fuzz_settings(scale=3)
@given(case=_requests())
def test_every_served_request_decodes_or_is_refused_as_malformed(
    case: tuple[int, int, bytes, bytes],
) -> None:
    key, version, original, frame = case
    schema = registry.schema(key, version)
    # The schema's reader is built on first use; build it in the worker before measuring.
    warm(registry.schema, (key, version))
    request, error = bounded(_server_decode, (key, version, frame), len(frame),
                             f"decode of api {key} v{version}")
    event("refused" if error is not None else "decoded")
    if error is not None:
        assert type(error) is MalformedRequest, repr(error)
        assert frame != original, f"api {key} v{version}: a valid request was refused: {error}"
        return
    assert type(request) is schema.request_type
    if frame == original:
        assert request == sample(schema.request_type)
