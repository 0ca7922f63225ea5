"""Malformed methods from a raw socket, byte for byte: the connection is closed with
502 SYNTAX_ERROR (the spec's code for illegal field values) and one warning line, never
a 541 or a traceback, and other connections keep working.

RabbitMQ 3.10 answers undecodable method arguments with 501 FRAME_ERROR ("cannot
decode ...") and does not check UTF-8 in Basic.Publish (an exchange name that is not
UTF-8 is then simply not found: 404); Portask answers 502 to every malformed method.
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

# (test id, exact frame bytes, class id, method id in the Connection.Close)
MALFORMED = [
    # Basic.Publish to exchange b"\xff\xfe" (not UTF-8), routing key "q".
    ("publish-exchange-not-utf8",
     bytes.fromhex("01 0001 0000000c 003c0028 0000 02fffe 0171 00 ce"), 60, 40),
    # Basic.Publish whose exchange name announces 10 bytes and the payload ends after 3.
    ("publish-exchange-truncated",
     bytes.fromhex("01 0001 0000000a 003c0028 0000 0a616263 ce"), 60, 40),
    # Basic.Publish whose exchange length (0xff) swallows the routing key and the bits.
    ("publish-exchange-length-lies",
     method_frame(1, PUBLISH + b"\xff" + b"ex" + b"\x01q" + b"\x00"), 60, 40),
    # Basic.Publish with a routing key that is not UTF-8.
    ("publish-routing-key-not-utf8",
     method_frame(1, PUBLISH + b"\x00" + b"\x02\xc3\x28" + b"\x00"), 60, 40),
    # Basic.Publish with a byte after its last argument.
    ("publish-trailing-byte",
     method_frame(1, PUBLISH + b"\x00" + b"\x01q" + b"\x00" + b"\x00"), 60, 40),
    # Queue.Declare of a name that is not UTF-8: ticket, b"\xe9t\xe9" (latin-1), bits, {}.
    ("declare-queue-not-utf8",
     method_frame(1, b"\x00\x32\x00\x0a\x00\x00" + b"\x03\xe9t\xe9" + b"\x00"
                  + b"\x00\x00\x00\x00"), 50, 10),
    # Queue.Declare whose arguments table says 100 bytes and holds 6.
    ("declare-table-length-lies",
     method_frame(1, b"\x00\x32\x00\x0a\x00\x00\x01q\x00" + struct.pack(">I", 100)
                  + b"\x01kSabc"), 50, 10),
    # Queue.Declare whose table entry is a long string running past the table.
    ("declare-table-value-overruns",
     method_frame(1, b"\x00\x32\x00\x0a\x00\x00\x01q\x00" + struct.pack(">I", 8)
                  + b"\x01kS" + struct.pack(">I", 1000) + b"x"), 50, 10),
    # Exchange.Declare cut inside its type name.
    ("exchange-declare-truncated",
     method_frame(1, b"\x00\x28\x00\x0a\x00\x00\x02ex\x06dir"), 40, 10),
    # Basic.Qos with two extra bytes.
    ("qos-trailing-bytes",
     method_frame(1, b"\x00\x3c\x00\x0a" + struct.pack(">IH", 0, 10) + b"\x00" + b"\x00\x00"),
     60, 10),
    # Basic.Ack one byte short (the multiple bit is missing).
    ("ack-truncated", method_frame(1, b"\x00\x3c\x00\x50" + struct.pack(">Q", 1)), 60, 80),
    # Basic.Consume whose consumer tag is a lone UTF-8 continuation byte.
    ("consume-tag-not-utf8",
     method_frame(1, b"\x00\x3c\x00\x14\x00\x00\x01q\x01\x80\x00\x00\x00\x00\x00"), 60, 20),
    # Channel.Close with a reply text that is not UTF-8.
    ("channel-close-not-utf8",
     method_frame(1, b"\x00\x14\x00\x28\x00\xc8\x01\xff\x00\x00\x00\x00"), 20, 40),
    # A method payload shorter than its class and method ids.
    ("method-shorter-than-ids", method_frame(1, b"\x00\x3c\x00"), 0, 0),
]


def _close(client: RawClient) -> commands.Connection.Close:
    close = client.expect(commands.Connection.Close)
    assert isinstance(close, commands.Connection.Close)
    return close


def _broker_lines(broker: BrokerProcess, port: int, timeout: float = 3.0) -> list[str]:
    """The broker's log lines about the client on local port ``port``."""
    mark = f"('127.0.0.1', {port})"
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in broker.stderr_text().splitlines() if mark in ln]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


@pytest.mark.parametrize("frame,class_id,method_id",
                         [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_method_is_502_with_one_warning_line(
    amqp_broker: BrokerProcess, frame: bytes, class_id: int, method_id: int
) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    port = client.sock.getsockname()[1]
    client.send(frame)
    close = _close(client)
    assert close.reply_code == 502, close.reply_text
    assert close.reply_text.startswith("SYNTAX_ERROR - ")
    assert (close.class_id, close.method_id) == (class_id, method_id)
    client.send_method(0, commands.Connection.CloseOk())
    assert client.closed_by_server()
    client.close()
    lines = _broker_lines(amqp_broker, port)
    assert len(lines) == 1 and " warning " in lines[0] and "code=502" in lines[0], lines
    assert "Traceback" not in amqp_broker.stderr_text()


def test_malformed_publish_leaves_other_connections_untouched(
    amqp_broker: BrokerProcess,
) -> None:
    bystander = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", amqp_broker.amqp_port))
    ch = bystander.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    for _round in range(3):
        client = RawClient(amqp_broker.amqp_port)
        client.handshake()
        client.send(MALFORMED[0][1])
        assert _close(client).reply_code == 502
        client.close()
        ch.basic_publish("", queue, b"still here")
        assert ch.basic_get(queue, auto_ack=True)[2] == b"still here"
    bystander.close()
    assert "Traceback" not in amqp_broker.stderr_text()


def test_content_header_whose_property_lengths_lie_is_502(amqp_broker: BrokerProcess) -> None:
    client = RawClient(amqp_broker.amqp_port)
    client.handshake()
    client.send_method(1, commands.Basic.Publish(exchange="", routing_key="nowhere"))
    # class 60, weight 0, body size 0, flags: content-type, whose length (200) runs past.
    header = struct.pack(">HHQH", 60, 0, 0, 0x8000) + b"\xc8text/plain"
    client.send(struct.pack(">BHI", 2, 1, len(header)) + header + b"\xce")
    close = _close(client)
    assert close.reply_code == 502 and "properties" in close.reply_text
    client.close()
