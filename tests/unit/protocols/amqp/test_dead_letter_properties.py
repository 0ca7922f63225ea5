"""Dead-lettering rewrites a message's properties; what cannot be rewritten is refused."""

from __future__ import annotations

import datetime
import struct

import pytest

from portask.broker.amqp.dead_letter import UndecodableProperties
from portask.protocols.amqp.properties import AmqpPropertyCodec

HEADERS_FLAG = 0x2000


def _properties_with_headers(table_body: bytes) -> bytes:
    return struct.pack(">H", HEADERS_FLAG) + struct.pack(">I", len(table_body)) + table_body


def _dead_letter(properties: bytes) -> tuple[bytes, list[dict[str, object]]]:
    return AmqpPropertyCodec().dead_lettered(
        properties, queue="q", reason="rejected", exchange="", routing_keys=["q"],
        time=datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC),
    )


def test_a_binary_long_string_header_that_cannot_be_written_back_is_refused_not_raised() -> None:
    # Found by the end-to-end fuzzer: a long string ('S') that is not UTF-8 decodes as
    # bytes, which pamqp cannot encode again: it escaped as TypeError with a traceback.
    properties = _properties_with_headers(b"\x01kS" + struct.pack(">I", 1) + b"\xfe")
    with pytest.raises(UndecodableProperties, match="re-encode"):
        _dead_letter(properties)


def test_ordinary_headers_get_their_x_death_entry() -> None:
    properties = _properties_with_headers(b"\x01kS" + struct.pack(">I", 1) + b"v")
    _, deaths = _dead_letter(properties)
    assert deaths[0]["reason"] == "rejected" and deaths[0]["queue"] == "q"
