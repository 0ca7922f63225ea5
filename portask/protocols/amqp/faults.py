"""Fault rules and the request log, applied to AMQP methods (the control API).

The connection hands a channel's method frames to ``hooked_method`` only while
``Faults.amqp_hooked`` is set (an AMQP rule is installed or the request log is on), so
a broker without either pays one attribute read per method frame (and per content
header, for the size of a publish). A matching rule closes the channel (action ``error``)
or the connection (action ``close``) with the rule's code and text, as the broker
would for a real refusal: the client's own error handling runs.

A ``delay`` or ``drop`` rule lets the method run and holds what the connection writes
from then on (its answer, a publish's confirm, and all that follows it), for
``delay_ms`` or for good (``held_output``).

A ``nack`` rule is asked apart, by a confirming channel once a publish is complete
(``Faults.amqp_nack``): the publish is not routed and the client gets Basic.Nack for it,
as from a queue that could not take it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from pamqp import commands

from portask.broker.amqp.errors import BrokerError
from portask.broker.control import FaultRule, Faults, RequestEntry, RequestLog
from portask.protocols.amqp import frames, held_output
from portask.protocols.amqp.constants import CHANNEL_ERROR_CODES, CONNECTION_ERROR_CODES
from portask.protocols.amqp.errors import AmqpError, ChannelClose, ConnectionClose

if TYPE_CHECKING:
    from portask.broker.amqp.exchanges import Exchange
    from portask.broker.amqp.queues import Message
    from portask.broker.amqp.vhosts import VirtualHost


# Method index -> the name rules use ("basic.publish").
_NAMES: dict[int, str] = {index: cls.name.lower()  # type: ignore[attr-defined]
                          for index, cls in commands.INDEX_MAPPING.items()}
_PUBLISH_INDEX = commands.Basic.Publish.index

# What the request log keeps of a method's arguments (those it has).
_LOGGED_FIELDS = ("exchange", "routing_key", "queue", "consumer_tag", "delivery_tag",
                  "multiple", "requeue", "mandatory", "prefetch_count", "durable",
                  "no_ack", "exchange_type", "if_unused", "if_empty")
REPLY_SUCCESS = 200


class Asking(Protocol):
    """Who a connection is, as fault rules match it."""

    client_properties: dict[str, Any]
    user: str


class HookedConnection(held_output.HoldingConnection, Asking, Protocol):
    """What of ``AmqpConnection`` the hook uses."""

    _out: list[bytes | memoryview]

    def dispatch_method(self, channel: Any, index: int, payload: bytes) -> None: ...


def hooked_method(conn: HookedConnection, faults: Faults, requests: RequestLog,
                  channel: Any, index: int, payload: bytes) -> None:
    """A channel's method with the fault rules applied and, while the request log is
    on, recorded with its reply code, the bytes sent in answer and the time taken."""
    if not requests.enabled:
        if index == _PUBLISH_INDEX:  # once per message: the exchange's bytes looked up
            exchanges = faults.publish_exchanges
            if exchanges is None or (exchanges and len(payload) > 6
                                     and payload[7:7 + payload[6]] in exchanges):
                check(conn, faults, index, payload)
        elif _NAMES.get(index) in faults.amqp_methods:
            check(conn, faults, index, payload)
        conn.dispatch_method(channel, index, payload)
        return
    described = _described(index, payload)
    if described is None:
        conn.dispatch_method(channel, index, payload)  # refused there, as it should be
        return
    name, details = described
    entry = requests.add(RequestEntry(
        protocol="amqp", api=name, version=None,
        client_id=conn.client_properties.get("connection_name"),
        connection=_peer(conn.transport), topics=(), size=len(payload) + _FRAMING,
        details=details, channel=channel.number))
    out = conn._out
    queued = len(out)
    started = time.perf_counter()
    try:
        if name in faults.amqp_methods:
            rule = _take(conn, faults, name, details)
            if rule is not None:
                entry.fault = rule.action
                _apply(conn, rule, index)
        conn.dispatch_method(channel, index, payload)
        entry.reply_code = REPLY_SUCCESS
    except AmqpError as err:
        entry.reply_code = err.code
        raise
    except BrokerError as err:
        entry.reply_code = CHANNEL_ERROR_CODES.get(type(err)) or CONNECTION_ERROR_CODES.get(
            type(err), 541)
        raise
    finally:
        entry.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        # What this method queued for the client (answers; deliveries it caused).
        entry.response_size = sum(len(part) for part in out[queued:])
    if index == _PUBLISH_INDEX:
        _publishing[id(channel)] = entry


def _described(index: int, payload: bytes) -> tuple[str, dict[str, Any]] | None:
    """The method's name and the arguments the log keeps; None if it does not decode."""
    if index == _PUBLISH_INDEX:  # its own parser: a decode costs 10x more
        try:
            exchange, routing_key, mandatory, _ = frames.parse_publish(payload)
        except frames.FrameSyntaxError:
            return None
        return "basic.publish", {"exchange": exchange, "routing_key": routing_key,
                                 "mandatory": mandatory}
    try:
        method = frames.decode_method(payload)
    except (frames.FrameSyntaxError, LookupError):
        return None
    return method.name.lower(), {name: getattr(method, name) for name in _LOGGED_FIELDS
                                 if getattr(method, name, None) is not None}


# A publish's entry until its content header says how large the body is.
_publishing: dict[int, RequestEntry] = {}
_FRAMING = 8  # frame type, channel, size and the frame end octet


def content_header(channel: Any, payload: bytes) -> None:
    """The content header of a publish: its body size goes into the publish's entry."""
    entry = _publishing.pop(id(channel), None)
    if entry is not None and len(payload) >= 12:
        entry.size += len(payload) + _FRAMING + int.from_bytes(payload[4:12], "big")


def _peer(transport: Any) -> str:
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def check(conn: HookedConnection, faults: Faults, index: int, payload: bytes) -> None:
    """Apply the rule that matches: raise the close it asks for, or hold the output;
    return when none matches (or the frame does not decode: the normal path refuses it
    with the proper error)."""
    described = _described(index, payload)
    if described is None:
        return
    name, details = described
    rule = _take(conn, faults, name, details)
    if rule is not None:
        _apply(conn, rule, index)


def _take(conn: Asking, faults: Faults, name: str,
          details: dict[str, Any]) -> FaultRule | None:
    return faults.take_amqp(name, details.get("queue"), details.get("exchange"),
                            client=conn.client_properties.get("connection_name"),
                            user=conn.user)


def _apply(conn: HookedConnection, rule: Any, index: int) -> None:
    if rule.action == "delay":
        held_output.hold(conn, rule.delay_ms)
        return
    if rule.action == "drop":
        held_output.hold(conn, None)
        return
    assert rule.code is not None and rule.text is not None
    class_id, method_id = index >> 16, index & 0xFFFF
    if rule.action == "error":
        raise ChannelClose(rule.code, rule.text, class_id, method_id)
    raise ConnectionClose(rule.code, rule.text, class_id, method_id)


def nacked(faults: Faults, vhost: VirtualHost, exchange: Exchange, message: Message,
           conn: Asking) -> bool:
    """Whether a nack rule takes this publish: matched on exchange and routing key, and
    on the queues it would reach when the rule names a queue."""
    names: tuple[str | None, ...] = (None,)
    if faults.nack_by_queue:
        queues = vhost.route(exchange, message.routing_key,
                             lambda: frames.headers_from_properties(message.properties))
        names = tuple(q.name for q in queues) or (None,)
    client = conn.client_properties.get("connection_name")
    return any(faults.take_amqp("basic.publish", name, exchange.name, message.routing_key,
                                nack=True, client=client, user=conn.user) is not None
               for name in names)
