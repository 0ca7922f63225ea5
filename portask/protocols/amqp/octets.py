"""Bytes quoted in error texts the way RabbitMQ quotes them, so a client sees the same
reply text from Portask as from RabbitMQ 3.10.

RabbitMQ formats the frames it refuses with Erlang's ``io_lib``: ``~w`` writes a binary
as its octets (``<<0,0,10,97>>``), ``~p`` as a string when every octet is printable
(``<<"abc">>``), and a frame error quotes at most the first 16 octets of the payload.
"""

from __future__ import annotations

SNIPPET = 16
_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v",
            0x08: "\\b", 0x0C: "\\f", 0x1B: "\\e"}


def erlang_w(data: bytes | memoryview) -> str:
    """``~w``: every octet as a number."""
    return "<<" + ",".join(str(b) for b in bytes(data)) + ">>"


def erlang_p(data: bytes | memoryview) -> str:
    """``~p``: a quoted string when all octets are printable ASCII (or escapable), else
    the octets as numbers."""
    raw = bytes(data)
    if raw and all(32 <= b < 127 or b in _ESCAPES for b in raw):
        return '<<"' + "".join(_ESCAPES.get(b, chr(b)) for b in raw) + '">>'
    return erlang_w(raw)


def frame_octets(frame_type: int, payload: bytes | memoryview) -> str:
    """RabbitMQ's description of a refused frame: "type 3, all octets = <<...>>"."""
    if len(payload) <= SNIPPET:
        return f"type {frame_type}, all octets = {erlang_p(payload)}"
    return f"type {frame_type}, first {SNIPPET} octets = {erlang_p(payload[:SNIPPET])}"
