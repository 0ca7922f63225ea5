"""The bounds check that stands between received bytes and kio's native decoder."""

from __future__ import annotations

import contextlib

import pytest

from portask.protocols.kafka import (
    apis,  # noqa: F401  (registers every API)
    registry,
)
from portask.protocols.kafka.bounds import check_request
from portask.protocols.kafka.wire import MalformedRequest, parse_request_header
from tests.unit.protocols.kafka.kio_values import encode_body, sample

SERVED = sorted(
    (api.key, version)
    for api in registry.APIS.values()
    for version in range(api.min_version, api.max_version + 1)
)
HUGE_COMPACT = b"\xff\xff\xff\xff\x0f"  # uvarint 2^32-1: a count of 2^32-2
HUGE_INT32 = b"\x7f\xff\xff\xff"


def test_metadata_v9_with_a_huge_compact_array_is_refused() -> None:
    # The 20-byte request that used to abort the process (issue 9, item 1).
    frame = bytes.fromhex("000000100003000900000001ffff00ffffffff0f")[4:]
    s = registry.schema(3, 9)
    *_, body_at = parse_request_header(frame, s.request_flexible)
    with pytest.raises(MalformedRequest, match="runs past the end"):
        registry.decode(s, frame, body_at)


def test_produce_v3_with_null_topic_data_is_refused() -> None:
    frame = bytes.fromhex("000000160000000300000001ffffffff000100001388ffffffff")[4:]
    s = registry.schema(0, 3)
    *_, body_at = parse_request_header(frame, s.request_flexible)
    with pytest.raises(MalformedRequest, match="null"):
        registry.decode(s, frame, body_at)


@pytest.mark.parametrize(("key", "version"), SERVED)
def test_a_valid_request_of_every_served_version_passes(key: int, version: int) -> None:
    s = registry.schema(key, version)
    request = sample(s.request_type)
    body = encode_body(request)
    assert registry.decode(s, body, 0) == request


@pytest.mark.parametrize(("key", "version"), SERVED)
def test_a_lying_count_anywhere_is_refused_or_fits(key: int, version: int) -> None:
    """Overwrite each position with a huge count: never may kio be asked to allocate it."""
    s = registry.schema(key, version)
    body = encode_body(sample(s.request_type))
    huge = HUGE_COMPACT if s.request_flexible else HUGE_INT32
    for at in range(len(body)):
        mutated = body[:at] + huge + body[at + len(huge) :]
        try:
            check_request(s.request_type, mutated, 0)
        except MalformedRequest:
            continue
        # A body that passes may still be refused by kio (bad UTF-8, say), but only
        # with an exception: an unchecked count would abort this process instead.
        for cut in range(len(mutated), -1, -1):
            with contextlib.suppress(MalformedRequest):
                registry.decode(s, mutated[:cut], 0)


@pytest.mark.parametrize(
    ("cursor", "ok"),
    [(b"\xff", True), (b"\x01\x02a\x00\x00\x00\x02\x00", True), (b"\x01\x02a", False),
     (b"\x02\x02a\x00\x00\x00\x02\x00", False), (b"", False)],
)
def test_a_nullable_struct_is_read_by_its_presence_marker(cursor: bytes, ok: bool) -> None:
    # DescribeTopicPartitions v0: topics ["a"], limit 5, then the nullable cursor.
    body = b"\x02\x02a\x00" + b"\x00\x00\x00\x05" + cursor + b"\x00"
    s = registry.schema(75, 0)
    if ok:
        request = registry.decode(s, body, 0)
        assert (request.cursor is None) == (cursor == b"\xff")
    else:
        with pytest.raises(MalformedRequest):
            check_request(s.request_type, body, 0)
