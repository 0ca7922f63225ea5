"""The hand-written hot-path codecs agree with pamqp, an independent implementation."""

from __future__ import annotations

import pytest
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from portask.protocols.amqp import frames


def _unmarshal_all(data: bytes) -> list[tuple[int, object]]:
    out = []
    while data:
        used, channel, value = frame.unmarshal(data)
        out.append((channel, value))
        data = data[used:]
    return out


def test_parse_publish_reads_what_pamqp_wrote() -> None:
    wire = frame.marshal(commands.Basic.Publish(exchange="ex", routing_key="a.b",
                                                mandatory=True), 3)
    payload = wire[7:-1]
    assert frames.parse_publish(payload) == ("ex", "a.b", True, False)


@pytest.mark.parametrize("size", [0, 1, 4088, 4089, 10_000])
def test_deliver_frames_decode_with_pamqp_and_split_at_frame_max(size: int) -> None:
    props = commands.Basic.Properties(content_type="text/plain", headers={"k": "v"},
                                      delivery_mode=2)
    header_payload = ContentHeader(0, 10, props).marshal()
    raw_properties = header_payload[12:]
    body = (b"0123456789" * 1001)[:size]
    head = frames.deliver_head(5, frames.shortstr("ctag"), "ex", "rk.é")
    parts = frames.deliver_frames(head, 5, 42, True, raw_properties, body, frame_max=4096)
    decoded = _unmarshal_all(b"".join(bytes(p) for p in parts))
    channel, deliver = decoded[0]
    assert channel == 5 and isinstance(deliver, commands.Basic.Deliver)
    assert (deliver.consumer_tag, deliver.delivery_tag, deliver.redelivered,
            deliver.exchange, deliver.routing_key) == ("ctag", 42, True, "ex", "rk.é")
    channel, header = decoded[1]
    assert channel == 5
    assert isinstance(header, ContentHeader) and header.body_size == len(body)
    assert header.properties.headers == {"k": "v"} and header.properties.delivery_mode == 2
    bodies = [v for _c, v in decoded[2:]]
    assert all(c == 5 for c, _v in decoded[2:])
    assert len(bodies) == -(-size // 4088)  # no empty body frame for an empty body
    assert all(isinstance(b, ContentBody) for b in bodies)
    assert all(len(b.value) <= 4096 - 8 for b in bodies)  # type: ignore[attr-defined]
    assert b"".join(b.value for b in bodies) == body  # type: ignore[attr-defined]


@pytest.mark.parametrize("redelivered", [False, True])
def test_a_packed_delivery_is_what_deliver_frames_writes(redelivered: bool) -> None:
    props = commands.Basic.Properties(content_type="text/plain", headers={"k": "v"},
                                      delivery_mode=2)
    raw_properties = ContentHeader(0, 10, props).marshal()[12:]
    body = b"0123456789" * 100
    head = frames.deliver_head(5, frames.shortstr("ctag"), "ex", "rk.é")
    written = b"".join(bytes(p) for p in frames.deliver_frames(
        head, 5, 2**40 + 7, redelivered, raw_properties, body, frame_max=4096))
    pack, prefix, middle, body_head = frames.deliver_packer(
        5, frames.shortstr("ctag"), "ex", "rk.é", len(raw_properties))
    packed = pack(prefix, 2**40 + 7, redelivered, middle, len(body), raw_properties,
                  body_head, len(body)) + body + b"\xce"
    assert packed == written
    decoded = _unmarshal_all(packed)
    assert [type(v) for _c, v in decoded] == [commands.Basic.Deliver, ContentHeader,
                                              ContentBody]
    assert decoded[0][1].redelivered is redelivered  # type: ignore[attr-defined]
    assert decoded[2][1].value == body  # type: ignore[attr-defined]


def test_headers_are_read_from_raw_properties_only_when_present() -> None:
    with_headers = ContentHeader(0, 0, commands.Basic.Properties(
        content_type="a", content_encoding="b", headers={"x": 1, "y": "z"})).marshal()[12:]
    without = ContentHeader(0, 0, commands.Basic.Properties(
        content_type="a")).marshal()[12:]
    assert frames.headers_from_properties(with_headers) == {"x": 1, "y": "z"}
    assert frames.headers_from_properties(without) is None


def test_confirm_frames_decode_as_basic_ack_and_nack() -> None:
    _used, channel, ack = frame.unmarshal(frames.confirm_frame(2, 77, True))
    assert channel == 2 and isinstance(ack, commands.Basic.Ack)
    assert (ack.delivery_tag, ack.multiple) == (77, True)
    _used, _channel, nack = frame.unmarshal(frames.confirm_frame(2, 5, False, ack=False))
    assert isinstance(nack, commands.Basic.Nack) and nack.delivery_tag == 5


def test_basic_fields_reads_delivery_mode_priority_and_expiration() -> None:
    from pamqp import commands

    from portask.protocols.amqp import frames

    props = commands.Basic.Properties(content_type="text/plain", headers={"a": 1},
                                      delivery_mode=2, priority=7, correlation_id="c",
                                      reply_to="r", expiration="1500")
    assert frames.basic_fields(props.marshal()) == (2, 7, "1500")
    assert frames.basic_fields(commands.Basic.Properties().marshal()) == (0, 0, None)


def test_add_long_header_keeps_other_properties() -> None:
    from pamqp import commands

    from portask.protocols.amqp import frames
    from portask.protocols.amqp.properties import _decode

    for original in (commands.Basic.Properties(content_type="a/b", delivery_mode=2),
                     commands.Basic.Properties(headers={"k": "v"}, message_id="m")):
        raw = frames.add_long_header(original.marshal(), "x-stream-offset", 42)
        decoded = _decode(raw)
        assert decoded.headers["x-stream-offset"] == 42
        assert decoded.content_type == original.content_type
        assert decoded.message_id == original.message_id
        assert decoded.delivery_mode == original.delivery_mode
        if original.headers:
            assert decoded.headers["k"] == "v"
