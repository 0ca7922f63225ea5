"""The Kafka record <-> AMQP message mapping (README "One log, two protocols") as pure
functions: property bytes checked by the strict decoder the broker uses elsewhere."""

from __future__ import annotations

import datetime

from pamqp import commands

from portask.broker.amqp.message_store import Message
from portask.broker.log.record_log import Record
from portask.protocols.amqp import frames
from portask.protocols.amqp.kafka_mapping import KafkaRecordMessages, to_record


def deliver(record: Record) -> tuple[Message, dict[str, object]]:
    message = KafkaRecordMessages().message(record, "t")
    return message, frames.decode_properties(message.properties)


def test_a_record_becomes_a_message_with_offset_timestamp_and_headers() -> None:
    record = Record(7, 1_700_000_000_999, b"key", memoryview(b"value"),
                    (("h", b"text"), ("bin", b"\xff"), ("nil", None)))
    message, props = deliver(record)
    assert (message.routing_key, bytes(message.body)) == ("key", b"value")
    assert props["headers"] == {"x-stream-offset": 7, "x-kafka-timestamp": 1_700_000_000_999,
                                "h": "text", "bin": b"\xff", "nil": None}
    assert props["timestamp"] == datetime.datetime.fromtimestamp(1_700_000_000,
                                                                 datetime.UTC)
    assert props["delivery_mode"] == 2


def test_a_plain_record_has_the_same_properties_as_any_other() -> None:
    # A text key, a value and no headers take the one-pack path; a header sends the
    # same record through the general one. Their properties differ only by that header.
    for offset, timestamp in ((0, 0), (2**40, 1_700_000_000_123), (5, -1)):
        plain, props = deliver(Record(offset, timestamp, b"k", memoryview(b"v"), ()))
        general, general_props = deliver(Record(offset, timestamp, b"k", memoryview(b"v"),
                                                (("h", b"x"),)))
        assert general_props["headers"].pop("h") == "x"
        assert props == general_props
        assert props["headers"] == {"x-stream-offset": offset, "x-kafka-timestamp": timestamp}
        assert (plain.routing_key, plain.persistent, plain.priority, plain.expiration) == (
            general.routing_key, general.persistent, general.priority, general.expiration)


def test_binary_empty_and_null_keys_and_tombstones_have_a_defined_form() -> None:
    binary, props = deliver(Record(0, 0, b"\x00\xff", memoryview(b"v"), ()))
    assert binary.routing_key == "" and props["headers"]["x-kafka-key"] == b"\x00\xff"
    empty, props = deliver(Record(0, 0, b"", memoryview(b"v"), ()))
    assert empty.routing_key == "" and props["headers"]["x-kafka-key"] == ""
    null, props = deliver(Record(0, 0, None, None, ()))
    assert null.routing_key == "" and bytes(null.body) == b""
    assert "x-kafka-key" not in props["headers"]
    assert props["headers"]["x-kafka-tombstone"] is True


def test_an_amqp_message_round_trips_through_a_kafka_record() -> None:
    sent = commands.Basic.Properties(
        content_type="application/json", correlation_id="c1", message_id="m1", priority=3,
        app_id="app", message_type="kind", reply_to="r", delivery_mode=1,
        headers={"s": "x", "n": 42, "flag": True, "f": 1.5, "raw": bytearray(b"\x01")},
        timestamp=datetime.datetime.fromtimestamp(1_600_000_000, datetime.UTC))
    message = Message("ex", "rk", sent.marshal(), b"body")
    key, value, headers, timestamp = to_record(message)
    assert (key, value, timestamp) == (b"rk", b"body", 1_600_000_000_000)
    assert ("amqp.content_type", b"application/json") in headers
    assert ("n", b"42") in headers and ("amqp.type.n", b"l") in headers
    back, props = deliver(Record(3, timestamp, key, memoryview(value), tuple(headers)))
    assert back.routing_key == "rk" and back.priority == 3
    for name in ("content_type", "correlation_id", "message_id", "priority", "app_id",
                 "message_type", "reply_to", "delivery_mode", "timestamp"):
        assert props[name] == getattr(sent, name), name
    assert {k: v for k, v in props["headers"].items() if not k.startswith("x-")} == {
        "s": "x", "n": 42, "flag": True, "f": 1.5, "raw": bytearray(b"\x01")}


def test_the_default_exchange_gives_a_null_key_unless_x_kafka_key_is_set() -> None:
    plain = Message("", "queue-name", b"\x00\x00", b"v")
    assert to_record(plain)[0] is None
    keyed = Message("", "queue-name", commands.Basic.Properties(
        headers={"x-kafka-key": "k", "x-kafka-tombstone": True}).marshal(), b"")
    key, value, headers, _ts = to_record(keyed)
    assert (key, value, headers) == (b"k", None, [])
