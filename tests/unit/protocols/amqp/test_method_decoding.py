"""Every AMQP method decodes strictly: pamqp (an independent codec) writes a method, and
every truncation, every extra byte and every non-UTF-8 short string of it is refused
with FrameSyntaxError, which the connection answers with 502."""

from __future__ import annotations

import struct
import time
from typing import Any

import pytest
from pamqp import commands
from pamqp.base import Frame as PamqpMethod

from portask.protocols.amqp import fields, frames
from portask.protocols.amqp.constants import reply_text

_SAMPLES: dict[str, Any] = {
    "octet": 7,
    "short": 513,
    "long": 70_000,
    "longlong": 2**40 + 3,
    "bit": True,
    "shortstr": "name-1",
    "longstr": "a long string",
    "table": {"k": 1, "s": "v", "t": True, "nested": {"list": [1, "a", False]}},
}

# Arguments whose values pamqp checks on construction.
_FIXED = {"ticket": 0, "cluster_id": "", "reserved_1": "", "reserved_2": False,
          "known_hosts": "", "capabilities": "", "insist": False, "out_of_band": "0",
          "version_major": 0, "version_minor": 9, "channel_id": "0", "locale": "en_US"}


def _sample(cls: type[PamqpMethod]) -> PamqpMethod:
    method = cls()
    for name in cls.__slots__:  # type: ignore[attr-defined]
        setattr(method, name, _FIXED.get(name, _SAMPLES[cls.amqp_type(name)]))
    return method


METHODS = sorted(commands.INDEX_MAPPING.values(), key=lambda c: c.index)


def _wire(method: PamqpMethod) -> bytes:
    return struct.pack(">I", method.index) + method.marshal()


@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.name)
def test_every_method_round_trips_with_pamqp(cls: type[PamqpMethod]) -> None:
    method = _sample(cls)
    payload = _wire(method)
    decoded = frames.decode_method(payload)
    assert type(decoded) is cls
    for name in cls.__slots__:  # type: ignore[attr-defined]
        assert getattr(decoded, name) == getattr(method, name), name
    assert frames.encode_method(decoded) == payload


@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.name)
def test_every_truncation_and_every_extra_byte_is_refused(cls: type[PamqpMethod]) -> None:
    payload = _wire(_sample(cls))
    for cut in range(len(payload)):
        with pytest.raises(frames.FrameSyntaxError):
            frames.decode_method(payload[:cut])
    with pytest.raises(frames.FrameSyntaxError, match="after the last argument"):
        frames.decode_method(payload + b"\x00")


def _shortstr_offsets(cls: type[PamqpMethod], payload: bytes) -> list[int]:
    """Where each short string argument's length byte is in ``payload``."""
    offsets = []
    pos, in_bits = 4, False
    for name in cls.__slots__:  # type: ignore[attr-defined]
        kind = cls.amqp_type(name)
        if kind == "bit":
            if not in_bits:
                pos, in_bits = pos + 1, True
            continue
        in_bits = False
        if kind == "shortstr":
            offsets.append(pos)
        _value, pos = fields.ARGUMENTS[kind](payload, pos, len(payload))
    return offsets


@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.name)
def test_every_short_string_that_is_not_utf8_is_refused(cls: type[PamqpMethod]) -> None:
    payload = _wire(_sample(cls))
    for at in _shortstr_offsets(cls, payload):
        size = payload[at]
        bad = payload[:at] + b"\x02\xc3\x28" + payload[at + 1 + size:]
        with pytest.raises(frames.FrameSyntaxError, match="UTF-8"):
            frames.decode_method(bad)


def test_names_are_any_utf8_and_encode_without_pamqp_validation() -> None:
    declare = commands.Queue.Declare()
    declare.queue = "café a!b x$y"
    payload = frames.encode_method(declare)
    assert frames.decode_method(payload).queue == "café a!b x$y"  # type: ignore[attr-defined]
    frame = frames.queue_declare_ok_frame(3, "é" * 127 + "z", 5, 1)
    assert frame[-1] == 0xCE and frame[7:11] == b"\x00\x32\x00\x0b"
    ok = frames.decode_method(frame[7:-1])
    assert (ok.queue, ok.message_count, ok.consumer_count) == ("é" * 127 + "z", 5, 1)  # type: ignore[attr-defined]


def test_table_lengths_that_lie_are_refused() -> None:
    head = b"\x00\x32\x00\x0a\x00\x00\x01q\x00"  # Queue.Declare up to its arguments
    entry = b"\x01kS" + struct.pack(">I", 3) + b"abc"
    assert frames.decode_method(head + struct.pack(">I", len(entry)) + entry).arguments == {  # type: ignore[attr-defined]
        "k": "abc"}
    for table_length in (len(entry) - 1, len(entry) + 1, 2**32 - 1):
        with pytest.raises(frames.FrameSyntaxError):
            frames.decode_method(head + struct.pack(">I", table_length) + entry)
    overrun = b"\x01kS" + struct.pack(">I", 2**31) + b"abc"
    with pytest.raises(frames.FrameSyntaxError, match="past the end"):
        frames.decode_method(head + struct.pack(">I", len(overrun)) + overrun)
    for tag in (b"Z", b"\xff"):
        bad = b"\x01k" + tag
        with pytest.raises(frames.FrameSyntaxError, match="unknown field type"):
            frames.decode_method(head + struct.pack(">I", len(bad)) + bad)


def _nested(depth: int) -> bytes:
    table = b""
    for _ in range(depth):
        table = struct.pack(">I", len(table) + 3) + b"\x01kF" + table if table else (
            struct.pack(">I", 0))
    return table


def test_nesting_is_bounded() -> None:
    head = b"\x00\x32\x00\x0a\x00\x00\x01q\x00"
    frames.decode_method(head + _nested(fields.MAX_NESTING))
    with pytest.raises(frames.FrameSyntaxError, match="nested deeper"):
        frames.decode_method(head + _nested(fields.MAX_NESTING + 2))


def test_a_frame_full_of_empty_entries_decodes_in_linear_time() -> None:
    # 30 000 void entries in one 120 KB table: pamqp's decoder copies the rest of the
    # buffer for each (gigabytes); a linear decoder takes milliseconds.
    head = b"\x00\x32\x00\x0a\x00\x00\x01q\x00"
    entries = b"".join(b"\x02" + f"{i % 256:02x}".encode() + b"V" for i in range(30_000))
    started = time.perf_counter()
    declare = frames.decode_method(head + struct.pack(">I", len(entries)) + entries)
    assert time.perf_counter() - started < 1.0
    assert len(declare.arguments) == 256  # type: ignore[attr-defined]


def test_timestamps_out_of_range_are_refused_not_raised_through() -> None:
    head = b"\x00\x32\x00\x0a\x00\x00\x01q\x00"
    entry = b"\x01tT" + struct.pack(">Q", 2**64 - 1)
    with pytest.raises(frames.FrameSyntaxError, match="out of range"):
        frames.decode_method(head + struct.pack(">I", len(entry)) + entry)


def test_unknown_method_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        frames.decode_method(b"\x00\x3c\x03\xe7")


def test_publish_and_ack_parsers_are_exact() -> None:
    publish = _wire(commands.Basic.Publish(exchange="ex", routing_key="rk", mandatory=True))
    assert frames.parse_publish(publish) == ("ex", "rk", True, False)
    for cut in range(len(publish)):
        with pytest.raises(frames.FrameSyntaxError):
            frames.parse_publish(publish[:cut])
    with pytest.raises(frames.FrameSyntaxError):
        frames.parse_publish(publish + b"\x00")
    ack = _wire(commands.Basic.Ack(delivery_tag=9, multiple=True))
    assert frames.parse_ack(ack) == (9, True)
    for bad in (ack[:-1], ack + b"\x00"):
        with pytest.raises(frames.FrameSyntaxError):
            frames.parse_ack(bad)


def test_property_lengths_are_checked_on_publish() -> None:
    props = commands.Basic.Properties(content_type="text/plain", headers={"a": 1},
                                      delivery_mode=2, message_id="m", timestamp=None,
                                      app_id="app").marshal()
    assert frames.basic_fields(props) == (2, 0, None)
    for cut in range(2, len(props)):
        with pytest.raises(frames.FrameSyntaxError):
            frames.basic_fields(props[:cut])
    with pytest.raises(frames.FrameSyntaxError):
        frames.basic_fields(props + b"\x00")
    assert frames.decode_properties(props)["app_id"] == "app"


def test_reply_text_is_cut_to_a_short_string_as_rabbitmq_does() -> None:
    assert reply_text(404, "no queue 'q'") == "NOT_FOUND - no queue 'q'"
    long = reply_text(404, "no queue '" + "é" * 127 + "z' in vhost '/'")
    assert long.endswith("...") and len(long.encode()) <= 255
    assert len(long.encode()) >= 252
