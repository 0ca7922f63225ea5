"""A valid AMQP 0-9-1 client conversation as frames, for fuzzers to mutate.

It touches what hostile bytes should reach: the handshake, confirms, a headers
exchange, a dead-lettering queue with a length limit, publishes with every common
property, get, reject (dead-lettering), consume, ack, cancel and both closes. Frames
are encoded with pamqp, a third-party codec, not Portask's.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader, ProtocolHeader

FRAME_HEAD = struct.Struct(">BHI")
PROPERTIES = commands.Basic.Properties(
    content_type="text/plain", headers={"k": "v", "n": 1}, delivery_mode=2, priority=3,
    expiration="60000", message_id="m-1",
)
# Indexes in session(): the first queue.declare, and the first basic.publish (its
# content header and body follow).
FIRST_QUEUE_DECLARE, FIRST_PUBLISH = 7, 11


def _content(channel: int, publish: commands.Basic.Publish, body: bytes) -> list[bytes]:
    return [
        frame.marshal(publish, channel),
        frame.marshal(ContentHeader(0, len(body), PROPERTIES), channel),
        frame.marshal(ContentBody(body), channel),
    ]


def session(suffix: str = "", exclusive: bool = False) -> list[bytes]:
    """The conversation, frame by frame (the protocol header first), as pika would send
    it. ``suffix`` names the queues and exchange apart from other sessions' (with
    ``exclusive``, its queues go when the connection does)."""
    ch = 1
    hx, dead, q = f"hx{suffix}", f"dead{suffix}", f"q{suffix}"
    methods: list[Any] = [
        commands.Connection.StartOk(
            client_properties={"product": "fuzz", "capabilities": {
                "publisher_confirms": True, "connection.blocked": True,
                "consumer_cancel_notify": True}},
            mechanism="PLAIN", response="\x00guest\x00guest"),
        commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0),
        commands.Connection.Open(virtual_host="/"),
    ]
    out = [frame.marshal(ProtocolHeader(), 0)]
    out += [frame.marshal(m, 0) for m in methods]
    out += [frame.marshal(m, ch) for m in (
        commands.Channel.Open(),
        commands.Confirm.Select(),
        commands.Exchange.Declare(exchange=hx, exchange_type="headers", auto_delete=exclusive),
        commands.Queue.Declare(queue=dead, exclusive=exclusive),
        commands.Queue.Bind(queue=dead, exchange=hx, arguments={"x-match": "any", "k": "v"}),
        commands.Queue.Declare(queue=q, exclusive=exclusive, arguments={
            "x-dead-letter-exchange": hx, "x-max-length": 2}),
        commands.Basic.Qos(prefetch_count=10),
    )]
    out += _content(ch, commands.Basic.Publish(exchange="", routing_key=q), b"first")
    out += _content(ch, commands.Basic.Publish(exchange=hx, routing_key=""), b"routed")
    out += _content(ch, commands.Basic.Publish(exchange="", routing_key=q), b"x" * 300)
    out += [frame.marshal(m, ch) for m in (
        commands.Basic.Get(queue=q),
        commands.Basic.Reject(delivery_tag=1, requeue=False),  # dead-letters "first"
        commands.Basic.Consume(queue=dead, consumer_tag="c1"),
        commands.Basic.Ack(delivery_tag=2, multiple=True),
        commands.Basic.Cancel(consumer_tag="c1"),
        commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0),
    )]
    out.append(frame.marshal(commands.Connection.Close(reply_code=200, reply_text="bye",
                                                       class_id=0, method_id=0), 0))
    return out


def with_payload(frames: list[bytes], at: int, payload: bytes) -> list[bytes]:
    """``frames`` with frame ``at`` carrying another payload, its size field kept true."""
    kind, channel, _ = FRAME_HEAD.unpack_from(frames[at])
    out = list(frames)
    out[at] = FRAME_HEAD.pack(kind, channel, len(payload)) + payload + b"\xce"
    return out
