"""Fuzz targets: AMQP method decoding, the hand-written hot-path parsers, basic properties.

Inputs are valid payloads written by pamqp's encoder, put through tests/mutation.py.
Contracts (what connection.py turns into a protocol error rather than a traceback):
- ``decode_method`` raises only FrameSyntaxError (502) or, for a method id that does
  not exist, LookupError (540); what it decodes is the method the ids name.
- ``parse_publish``, ``parse_ack``, ``parse_content_header`` and ``basic_fields`` raise
  only FrameSyntaxError.
- ``headers_from_properties`` never raises (headers routing treats bad headers as none).
- Allocation stays linear in the payload (all of this is pure Python: tracemalloc sees it).

What the broker does with what these accept (replies that echo names, properties
stored and dead-lettered later) is test_fuzz_connection.py's, through the real paths.
"""

from __future__ import annotations

import datetime
import decimal
import struct
import warnings
from typing import Any

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.header import ContentHeader

from portask.protocols.amqp import frames
from tests.allocation import bounded
from tests.mutation import fuzz_settings, mutated

pytestmark = pytest.mark.fuzz

# A field table with every type pamqp writes, nested, as clients put in
# client_properties and x-arguments.
_TABLE: dict[str, Any] = {
    "bool": True, "int": 7, "long": 2**40, "neg": -3, "float": 1.5,
    "decimal": decimal.Decimal("1.25"), "str": "ünïcode", "bytes": bytearray(b"\x00\xff"),
    "time": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), "void": None,
    "list": [1, "two", [3], {"four": 4}], "table": {"nested": {"deeper": "yes"}},
    "capabilities": {"publisher_confirms": True, "connection.blocked": True},
}
_ARGUMENTS = {"x-message-ttl": 60_000, "x-max-length": 10, "x-dead-letter-exchange": "dlx",
              "x-queue-type": "classic", "x-priority": 5, "x-match": "all", "k": "v"}


def _methods() -> list[Any]:
    """One valid instance of every method, with non-default values where it has any."""
    specific = [
        commands.Connection.StartOk(client_properties=_TABLE, mechanism="PLAIN",
                                    response="\x00guest\x00guest", locale="en_US"),
        commands.Connection.SecureOk(response="secret"),
        commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=60),
        commands.Connection.Open(virtual_host="/"),
        commands.Connection.Close(reply_code=320, reply_text="bye", class_id=60, method_id=40),
        commands.Connection.Blocked(reason="low on memory"),
        commands.Connection.UpdateSecret(new_secret="s", reason="r"),
        commands.Channel.Flow(active=False),
        commands.Channel.Close(reply_code=406, reply_text="no", class_id=50, method_id=10),
        commands.Exchange.Declare(exchange="ex", exchange_type="topic", durable=True,
                                  arguments={"alternate-exchange": "ae"}),
        commands.Exchange.Delete(exchange="ex", if_unused=True),
        commands.Exchange.Bind(destination="d", source="s", routing_key="a.*", arguments=_TABLE),
        commands.Exchange.Unbind(destination="d", source="s", routing_key="#"),
        commands.Queue.Declare(queue="q", durable=True, arguments=_ARGUMENTS),
        commands.Queue.Bind(queue="q", exchange="ex", routing_key="rk", arguments=_ARGUMENTS),
        commands.Queue.Purge(queue="q"),
        commands.Queue.Delete(queue="q", if_empty=True),
        commands.Queue.Unbind(queue="q", exchange="ex", routing_key="rk"),
        commands.Basic.Qos(prefetch_count=10, global_=True),
        commands.Basic.Consume(queue="q", consumer_tag="ctag", no_ack=True,
                               arguments={"x-priority": 3, "x-stream-offset": "first"}),
        commands.Basic.Cancel(consumer_tag="ctag"),
        commands.Basic.Publish(exchange="ex", routing_key="rk", mandatory=True),
        commands.Basic.Get(queue="q", no_ack=True),
        commands.Basic.Ack(delivery_tag=2**40, multiple=True),
        commands.Basic.Reject(delivery_tag=3, requeue=False),
        commands.Basic.Nack(delivery_tag=4, multiple=True, requeue=False),
        commands.Basic.Recover(requeue=True),
        commands.Confirm.Select(nowait=True),
        # Server methods: a client may send those too.
        commands.Connection.Start(server_properties=_TABLE, mechanisms="PLAIN AMQPLAIN"),
        commands.Connection.Secure(challenge="c"),
        commands.Connection.Tune(channel_max=2047, frame_max=131072, heartbeat=60),
        commands.Channel.FlowOk(active=True),
        commands.Queue.DeclareOk(queue="q", message_count=1, consumer_count=2),
        commands.Queue.PurgeOk(message_count=3),
        commands.Queue.DeleteOk(message_count=4),
        commands.Basic.ConsumeOk(consumer_tag="ctag"),
        commands.Basic.CancelOk(consumer_tag="ctag"),
        commands.Basic.Return(reply_code=312, reply_text="NO_ROUTE", exchange="ex",
                              routing_key="rk"),
        commands.Basic.Deliver(consumer_tag="ctag", delivery_tag=1, redelivered=True,
                               exchange="ex", routing_key="rk"),
        commands.Basic.GetOk(delivery_tag=1, exchange="ex", routing_key="rk", message_count=5),
    ]
    seen = {type(m) for m in specific}
    # Every other method, whose defaults are all it has (the -ok methods, tx, ...).
    return specific + [cls() for cls in commands.INDEX_MAPPING.values() if cls not in seen]


with warnings.catch_warnings():  # pamqp warns that a few methods are deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    _PAYLOADS = tuple(pamqp_frame.marshal(m, 1)[7:-1] for m in _methods())
_INDEX = struct.Struct(">I")


def _fields(method: Any) -> dict[str, Any]:
    return {name: getattr(method, name) for name in method.__slots__}


def _nested_tables(depth: int) -> bytes:
    table = struct.pack(">I", 0)
    for _ in range(depth):
        table = struct.pack(">I", len(table) + 3) + b"\x01kF" + table
    return table


# Found by this target: a queue.declare whose arguments nest 2,000 tables deep (14 KB)
# makes pamqp's recursive decoder raise RecursionError, which escapes decode_method
# (a 541 and a traceback instead of a 502).
_DEEP_TABLES = b"\x00\x32\x00\x0a\x00\x00\x01q\x00" + _nested_tables(2000)


@fuzz_settings(scale=2)
@example(case=(b"", _DEEP_TABLES))  # b"": no valid original to compare with
@given(case=mutated(st.sampled_from(_PAYLOADS), _PAYLOADS))
def test_every_method_decodes_or_is_refused_as_a_syntax_error(
    case: tuple[bytes, bytes],
) -> None:
    original, payload = case
    method, error = bounded(frames.decode_method, (payload,), len(payload), "decode_method",
                            native=False)
    event("refused" if error is not None else "decoded")
    index = _INDEX.unpack_from(payload)[0] if len(payload) >= 4 else None
    if error is not None:
        if type(error) is LookupError:
            assert index is not None and index not in commands.INDEX_MAPPING
            return
        assert type(error) is frames.FrameSyntaxError, repr(error)
        assert payload != original, f"a valid method was refused: {error}"
        return
    assert type(method) is commands.INDEX_MAPPING[index]
    if payload == original:
        assert _fields(method) == _fields(frames.decode_method(original))


_PUBLISH = (
    *(pamqp_frame.marshal(commands.Basic.Publish(exchange=e, routing_key=k, mandatory=m), 1)[7:-1]
      for e, k, m in (("", "q", False), ("amq.topic", "a.b.c", True))),
    # Longest names the wire allows (pamqp's encoder stops exchange names at 127).
    b"\x00\x3c\x00\x28\x00\x00\xff" + b"x" * 255 + b"\xff" + b"y" * 255 + b"\x01",
)
_PROPERTIES = tuple(
    ContentHeader(0, size, commands.Basic.Properties(**props)).marshal()
    for size, props in (
        (0, {}),
        (5, {"delivery_mode": 2}),
        (2**40, {"content_type": "text/plain", "content_encoding": "gzip", "headers": _TABLE,
                 "delivery_mode": 1, "priority": 9, "correlation_id": "c", "reply_to": "r",
                 "expiration": "60000", "message_id": "m",
                 "timestamp": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
                 "message_type": "t", "user_id": "guest", "app_id": "a"}),
        (1, {"headers": {"x-match": "any", "k": [1, 2]}, "expiration": "5"}),
    )
)
_ACKS = tuple(pamqp_frame.marshal(commands.Basic.Ack(delivery_tag=t, multiple=m), 1)[7:-1]
              for t, m in ((1, False), (2**63 - 1, True)))


def _hot_path(payload: bytes) -> tuple[Any, ...]:
    """Each hand-written parser on the payload, as the channel applies them."""
    kind = _INDEX.unpack_from(payload)[0] if len(payload) >= 4 else None
    if kind == commands.Basic.Publish.index:
        return frames.parse_publish(payload)
    if kind == commands.Basic.Ack.index:
        return frames.parse_ack(payload)
    class_id, _weight, body_size, properties = frames.parse_content_header(payload)
    return class_id, body_size, frames.basic_fields(properties)


@fuzz_settings()
@given(case=mutated(st.sampled_from(_PUBLISH + _PROPERTIES + _ACKS), _PROPERTIES))
def test_hot_path_parsers_parse_or_refuse_as_a_syntax_error(case: tuple[bytes, bytes]) -> None:
    original, payload = case
    parsed, error = bounded(_hot_path, (payload,), len(payload), "hot-path parsers",
                            native=False)
    event("refused" if error is not None else "parsed")
    if error is not None:
        assert type(error) is frames.FrameSyntaxError, repr(error)
        assert payload != original, f"a valid payload was refused: {error}"
        return
    if payload != original or original in _ACKS:
        return
    if original in _PUBLISH:
        publish = frames.decode_method(original)
        assert parsed == (publish.exchange, publish.routing_key, publish.mandatory, False)
    else:
        header = ContentHeader()
        header.unmarshal(payload)
        props = header.properties
        _, body_size, fields = parsed
        assert body_size == header.body_size
        assert fields == (props.delivery_mode or 0, props.priority or 0, props.expiration)


# Found by this target: property flags with the continuation bit set and no second flag
# word make headers_from_properties raise IndexError (a publish to a headers exchange
# with these properties gets 541 and a traceback).
_CONTINUED_FLAGS = b"\xff\xff\xff\xff\x0f"


@fuzz_settings()
@example(case=(b"", _CONTINUED_FLAGS))
@given(case=mutated(st.sampled_from(_PROPERTIES).map(lambda h: h[12:]), _PROPERTIES))
def test_headers_are_read_from_any_properties_or_taken_as_none(
    case: tuple[bytes, bytes],
) -> None:
    original, properties = case
    headers, error = bounded(frames.headers_from_properties, (properties,), len(properties),
                             "headers_from_properties", native=False)
    assert error is None, repr(error)
    event("none" if headers is None else "headers")
    assert headers is None or isinstance(headers, dict)
    if properties == original:
        expected = ContentHeader()
        expected.unmarshal(b"\x00\x3c\x00\x00" + bytes(8) + original)
        assert headers == (expected.properties.headers or None)
