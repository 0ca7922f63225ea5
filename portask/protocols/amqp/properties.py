"""Basic properties decoded (strictly, by ``frames.decode_properties``) and re-encoded
with pamqp, for the few broker paths that must read or change them: dead-lettering
(x-death), quorum redeliveries (x-delivery-count), the management API.

The publish and deliver paths never come here; they carry the raw property bytes.
"""

from __future__ import annotations

import datetime
from typing import Any

from pamqp import commands

from portask.broker.amqp.dead_letter import UndecodableProperties
from portask.protocols.amqp import frames

_FIRST_DEATH = ("x-first-death-reason", "x-first-death-queue", "x-first-death-exchange")
# RabbitMQ's names for the basic properties (its P_basic record) -> pamqp's attributes.
_PLAIN_NAMES = {
    "content_type": "content_type", "content_encoding": "content_encoding",
    "headers": "headers", "delivery_mode": "delivery_mode", "priority": "priority",
    "correlation_id": "correlation_id", "reply_to": "reply_to", "expiration": "expiration",
    "message_id": "message_id", "timestamp": "timestamp", "type": "message_type",
    "user_id": "user_id", "app_id": "app_id", "cluster_id": "cluster_id",
}
_INT_PROPERTIES = ("delivery_mode", "priority")


def _decode(properties: bytes | memoryview) -> commands.Basic.Properties:
    """Strictly, in linear time: publish checks only the properties' outer lengths (a
    full decode per message would cost more than the rest of the publish), so what is
    inside a headers table is first read here. Raises UndecodableProperties."""
    try:
        values = frames.decode_properties(properties)
    except frames.FrameSyntaxError as err:
        raise UndecodableProperties(str(err)) from None
    props = commands.Basic.Properties()
    for name, value in values.items():
        setattr(props, name, value)
    return props


class AmqpPropertyCodec:
    """The ``PropertyCodec`` the broker's dead-letter path calls (see broker/amqp/dead_letter)."""

    def headers(self, properties: bytes | memoryview) -> dict[str, Any] | None:
        return frames.headers_from_properties(properties) or None

    def to_plain(self, properties: bytes | memoryview) -> dict[str, Any]:
        try:
            props = _decode(properties)
        except UndecodableProperties:
            return {}  # shown without properties: they were stored as published
        out: dict[str, Any] = {}
        for plain, attr in _PLAIN_NAMES.items():
            value = getattr(props, attr)
            if value is None or value == "":
                continue
            if isinstance(value, datetime.datetime):
                value = int(value.timestamp())
            out[plain] = value
        return out

    def from_plain(self, values: dict[str, Any]) -> bytes:
        kwargs: dict[str, Any] = {}
        for plain, value in values.items():
            attr = _PLAIN_NAMES.get(plain)
            if attr is None:
                raise ValueError(f"invalid property: {plain}")
            if value is None:
                continue
            if plain in _INT_PROPERTIES:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{plain} must be an integer")
            elif plain == "headers":
                if not isinstance(value, dict):
                    raise ValueError("headers must be an object")
            elif plain == "timestamp":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError("timestamp must be an integer")
                value = datetime.datetime.fromtimestamp(value, datetime.UTC)
            elif not isinstance(value, str):
                raise ValueError(f"{plain} must be a string")
            kwargs[attr] = value
        try:
            return bytes(commands.Basic.Properties(**kwargs).marshal())
        except Exception as err:  # pamqp refuses values it cannot encode
            raise ValueError(str(err)) from None

    def set_int_header(self, properties: bytes | memoryview, name: str, value: int) -> bytes:
        try:
            props = _decode(properties)
        except UndecodableProperties:
            return bytes(properties)  # delivered as published, without the header
        headers = dict(props.headers or {})
        headers[name] = value
        props.headers = headers
        return props.marshal()

    def dead_lettered(
        self, properties: bytes | memoryview, *, queue: str, reason: str, exchange: str,
        routing_keys: list[str], time: datetime.datetime,
    ) -> tuple[bytes, list[dict[str, Any]]]:
        props = _decode(properties)
        headers = dict(props.headers or {})
        info: dict[str, Any] = {"reason": reason, "queue": queue, "time": time,
                                "exchange": exchange, "routing-keys": list(routing_keys)}
        # The expiration must not fire again in the dead-letter queue (RabbitMQ's rule).
        if props.expiration is not None:
            info["original-expiration"] = props.expiration
            props.expiration = None
        deaths = headers.get("x-death")
        if isinstance(deaths, list) and deaths:
            match = next((d for d in deaths if isinstance(d, dict)
                          and d.get("queue") == queue and d.get("reason") == reason
                          and d.get("exchange") == exchange), None)
            if match is None:
                entry = {"count": 1, **info}
            else:
                entry = dict(match)
                entry["count"] = int(entry.get("count") or 0) + 1
            # The entry for this death goes first, its fields sorted, as RabbitMQ does.
            deaths = [dict(sorted(entry.items()))] + [d for d in deaths if d is not match]
        else:
            deaths = [{"count": 1, **info}]
            for key, value in zip(_FIRST_DEATH, (reason, queue, exchange), strict=True):
                headers[key] = value
        headers["x-death"] = deaths
        props.headers = headers
        try:
            return props.marshal(), deaths
        except (TypeError, ValueError) as err:
            # A long string that is not UTF-8 is read as bytes, which pamqp cannot write.
            raise UndecodableProperties(f"cannot re-encode the properties: {err}") from None
