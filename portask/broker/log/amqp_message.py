"""An AMQP message as a log stores it: a 16-byte header, exchange, routing key, the
content header's property bytes as the publisher sent them, and the body.

Durable queue lanes and stream queues store this one layout (big-endian):

    0 flags u8 (1: persistent)   2 exchange length u8       4 properties length u32
    1 priority u8                3 routing key length u8    8 TTL deadline ms i64 (0: none)
    16 exchange, routing key, properties, body

Nothing here decodes the property bytes: that is the AMQP codec's part, at the edge.
"""

from __future__ import annotations

import struct

RECORD = struct.Struct(">BBBBIq")
RECORD_HEADER = RECORD.size
FLAG_PERSISTENT = 1


def split(payload: memoryview) -> tuple[int, int, str, str, memoryview, memoryview, int]:
    """(flags, priority, exchange, routing key, properties, body, deadline ms); properties
    and body are slices of ``payload``."""
    flags, priority, ex_len, rk_len, props_len, deadline = RECORD.unpack_from(payload)
    pos = RECORD_HEADER
    exchange = str(payload[pos:pos + ex_len], "utf-8")
    pos += ex_len
    routing_key = str(payload[pos:pos + rk_len], "utf-8")
    pos += rk_len
    return (flags, priority, exchange, routing_key, payload[pos:pos + props_len],
            payload[pos + props_len:], deadline)
