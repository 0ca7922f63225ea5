"""Malformed methods from a raw socket, byte for byte: the connection is closed as
RabbitMQ 3.10 closes it (501 FRAME_ERROR "cannot decode <<octets>>", or "Malformed UTF-8
in shortstr") with one warning line in Portask's log, never a traceback, and other
connections keep working.

Differences on purpose, each marked below: RabbitMQ does not check UTF-8 in
Basic.Publish (the exchange is then not found, and the 404 quotes bytes that are not
UTF-8); Portask checks every short string. Where RabbitMQ's decoder crashes (a table
value overrunning its table, property lengths that lie) it drops the connection without
a Close or answers 541; Portask says what it could not decode.
"""

from __future__ import annotations

import struct
import time

import pika
import pytest
from pamqp import commands

from tests.broker_process import BrokerProcess
from tests.integration.amqp.rawclient import RawClient


def method_frame(channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce"


PUBLISH = b"\x00\x3c\x00\x28\x00\x00"  # class 60, method 40, reserved short

UTF8 = (501, "FRAME_ERROR - Malformed UTF-8 in shortstr", 0, 0)
RABBITMQ_DOES_NOT_CHECK_UTF8_IN_PUBLISH = "rabbitmq-skips-utf8-check"
RABBITMQ_CRASHES = "rabbitmq-drops-the-connection"


def _cannot_decode(octets: str, class_id: int, method_id: int) -> tuple[int, str, int, int]:
    return (501, f"FRAME_ERROR - cannot decode <<{octets}>>", class_id, method_id)


# (test id, exact frame bytes, the Connection.Close, what RabbitMQ does instead if it differs)
MALFORMED = [
    # Basic.Publish to exchange b"\xff\xfe" (not UTF-8), routing key "q".
    ("publish-exchange-not-utf8",
     bytes.fromhex("01 0001 0000000c 003c0028 0000 02fffe 0171 00 ce"), UTF8,
     RABBITMQ_DOES_NOT_CHECK_UTF8_IN_PUBLISH),
    # Basic.Publish whose exchange name announces 10 bytes and the payload ends after 3.
    ("publish-exchange-truncated",
     bytes.fromhex("01 0001 0000000a 003c0028 0000 0a616263 ce"),
     _cannot_decode("0,0,10,97,98,99", 60, 40), None),
    # Basic.Publish whose exchange length (0xff) swallows the routing key and the bits.
    ("publish-exchange-length-lies",
     method_frame(1, PUBLISH + b"\xff" + b"ex" + b"\x01q" + b"\x00"),
     _cannot_decode("0,0,255,101,120,1,113,0", 60, 40), None),
    # Basic.Publish with a routing key that is not UTF-8.
    ("publish-routing-key-not-utf8",
     method_frame(1, PUBLISH + b"\x00" + b"\x02\xc3\x28" + b"\x00"), UTF8,
     RABBITMQ_DOES_NOT_CHECK_UTF8_IN_PUBLISH),
    # Basic.Publish with a byte after its last argument.
    ("publish-trailing-byte",
     method_frame(1, PUBLISH + b"\x00" + b"\x01q" + b"\x00" + b"\x00"),
     _cannot_decode("0,0,0,1,113,0,0", 60, 40), None),
    # Queue.Declare of a name that is not UTF-8: ticket, b"\xe9t\xe9" (latin-1), bits, {}.
    ("declare-queue-not-utf8",
     method_frame(1, b"\x00\x32\x00\x0a\x00\x00" + b"\x03\xe9t\xe9" + b"\x00"
                  + b"\x00\x00\x00\x00"), UTF8, None),
    # Queue.Declare whose arguments table says 100 bytes and holds 6.
    ("declare-table-length-lies",
     method_frame(1, b"\x00\x32\x00\x0a\x00\x00\x01q\x00" + struct.pack(">I", 100)
                  + b"\x01kSabc"),
     _cannot_decode("0,0,1,113,0,0,0,0,100,1,107,83,97,98,99", 50, 10), None),
    # Queue.Declare whose table entry is a long string running past the table.
    ("declare-table-value-overruns",
     method_frame(1, b"\x00\x32\x00\x0a\x00\x00\x01q\x00" + struct.pack(">I", 8)
                  + b"\x01kS" + struct.pack(">I", 1000) + b"x"),
     _cannot_decode("0,0,1,113,0,0,0,0,8,1,107,83,0,0,3,232,120", 50, 10), RABBITMQ_CRASHES),
    # Exchange.Declare cut inside its type name.
    ("exchange-declare-truncated",
     method_frame(1, b"\x00\x28\x00\x0a\x00\x00\x02ex\x06dir"),
     _cannot_decode("0,0,2,101,120,6,100,105,114", 40, 10), None),
    # Basic.Qos with two extra bytes.
    ("qos-trailing-bytes",
     method_frame(1, b"\x00\x3c\x00\x0a" + struct.pack(">IH", 0, 10) + b"\x00" + b"\x00\x00"),
     _cannot_decode("0,0,0,0,0,10,0,0,0", 60, 10), None),
    # Basic.Ack one byte short (the multiple bit is missing).
    ("ack-truncated", method_frame(1, b"\x00\x3c\x00\x50" + struct.pack(">Q", 1)),
     _cannot_decode("0,0,0,0,0,0,0,1", 60, 80), None),
    # Basic.Consume whose consumer tag is a lone UTF-8 continuation byte.
    ("consume-tag-not-utf8",
     method_frame(1, b"\x00\x3c\x00\x14\x00\x00\x01q\x01\x80\x00\x00\x00\x00\x00"),
     UTF8, None),
    # Channel.Close with a reply text that is not UTF-8.
    ("channel-close-not-utf8",
     method_frame(1, b"\x00\x14\x00\x28\x00\xc8\x01\xff\x00\x00\x00\x00"), UTF8, None),
]


def _broker_lines(broker: BrokerProcess, port: int, timeout: float = 3.0) -> list[str]:
    """The broker's log lines about the client on local port ``port``."""
    mark = f"('127.0.0.1', {port})"
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in broker.stderr_text().splitlines() if mark in ln]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


@pytest.mark.parametrize(("frame", "expected", "differs"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_method_closes_as_rabbitmq_does_with_one_warning_line(
    amqp_broker: BrokerProcess, frame: bytes, expected: tuple[int, str, int, int],
    differs: str | None,
) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    port = client.sock.getsockname()[1]
    client.send(frame)
    if amqp_broker.kind == "rabbitmq" and differs:
        _rabbitmq_differs(client, differs)
        return
    assert client.close_or_drop() == expected
    client.send_method(0, commands.Connection.CloseOk())
    assert client.closed_by_server(timeout=35)
    client.close()
    if amqp_broker.kind == "portask":
        lines = _broker_lines(amqp_broker, port)
        assert len(lines) == 1 and " warning " in lines[0] and "code=501" in lines[0], lines
        assert "Traceback" not in amqp_broker.stderr_text()


def _rabbitmq_differs(client: RawClient, how: str) -> None:
    """What RabbitMQ does where Portask refuses on purpose (see the module's docstring)."""
    if how == RABBITMQ_CRASHES:
        assert client.close_or_drop() is None
    else:  # the publish is taken and waits for its content; the channel stays open
        client.send_method(1, commands.Basic.Qos(prefetch_count=1))
        close = client.close_or_drop()
        assert close is not None and close[0] == 505  # a method where content was due
    client.close()


def test_malformed_publish_leaves_other_connections_untouched(
    amqp_broker: BrokerProcess,
) -> None:
    bystander = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", amqp_broker.amqp_port))
    ch = bystander.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    truncated = MALFORMED[1]
    for _round in range(3):
        client = RawClient(amqp_broker.amqp_port)
        client.handshake()
        client.send(truncated[1])
        assert client.close_or_drop() == truncated[2]
        client.close()
        ch.basic_publish("", queue, b"still here")
        assert ch.basic_get(queue, auto_ack=True)[2] == b"still here"
    bystander.close()
    if amqp_broker.kind == "portask":
        assert "Traceback" not in amqp_broker.stderr_text()


def test_content_header_whose_property_lengths_lie_is_502(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(1, commands.Basic.Publish(exchange="", routing_key="nowhere"))
    # class 60, weight 0, body size 0, flags: content-type, whose length (200) runs past.
    header = struct.pack(">HHQH", 60, 0, 0, 0x8000) + b"\xc8text/plain"
    client.send(struct.pack(">BHI", 2, 1, len(header)) + header + b"\xce")
    close = client.close_or_drop()
    if amqp_broker.kind == "rabbitmq":
        # Difference on purpose: RabbitMQ's property decoder crashes (541 INTERNAL_ERROR).
        assert close == (541, "INTERNAL_ERROR", 0, 0)
    else:
        assert close is not None and close[0] == 502 and "properties" in close[1]
    client.close()
